// Draws the risk trend when Chart.js is there; the page reads the same numbers without it (noscript table).
(function () {
  "use strict";
  var data = document.getElementById("trend-data");
  var canvas = document.getElementById("trend");
  if (!data || !canvas || typeof Chart === "undefined") { return; }
  var points = JSON.parse(data.textContent);
  new Chart(canvas, {
    type: "line",
    data: {
      labels: points.map(function (p) { return p.taken_at.slice(0, 16).replace("T", " "); }),
      datasets: [{ label: canvas.dataset.label, data: points.map(function (p) { return p.score; }),
                   borderColor: "#d3461f", backgroundColor: "rgba(211,70,31,.12)", fill: true, tension: 0.2 }]
    },
    options: { maintainAspectRatio: false, animation: false,
               scales: { y: { min: 0, max: 100 } }, plugins: { legend: { display: false } } }
  });
})();
