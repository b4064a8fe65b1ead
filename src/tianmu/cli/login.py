"""`tianmu login` and `tianmu serve`: certificate sign-in to a Tianmu server, and the web service itself.

Part of the identity area (`tianmu.cli.identity` registers them): the session saved by `login` lives in
the data directory of the invocation's settings.
"""

from __future__ import annotations

import json as jsonlib
from pathlib import Path
from typing import Annotated

import httpx
import typer

from tianmu.cli.console import ExitCode, err_console, out_console
from tianmu.cli.crypto import write_private
from tianmu.cli.main import cli_errors
from tianmu.cli.session import CliSession
from tianmu.core.errors import InputError
from tianmu.gmcrypto import sm2
from tianmu.gmcrypto.x509 import load_certificates
from tianmu.identity.certlogin import sign_challenge

__all__ = ["register_login_and_serve"]


def register_login_and_serve(app: typer.Typer) -> None:
    """`tianmu login` (certificate sign-in to a server) and `tianmu serve` (the web service)."""

    @app.command("login")
    @cli_errors
    def login(
        ctx: typer.Context,
        cert: Annotated[
            Path, typer.Option("--cert", help="Your SM2 certificate (PEM; intermediates may follow).")
        ],
        key: Annotated[Path, typer.Option("--key", help="Its SM2 private key (PEM).")],
        server: Annotated[
            str, typer.Option("--server", help="The Tianmu server, e.g. https://tianmu.example.org")
        ],
        tenant: Annotated[str | None, typer.Option(help="Tenant (the server's default if omitted).")] = None,
    ) -> None:
        """Sign in to a Tianmu server with an SM2 certificate; the session is saved for later commands."""
        session = CliSession.of(ctx)
        try:
            chain = cert.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror}", str(cert)) from exc
        load_certificates(chain, source=str(cert))
        private = sm2.read_private_key(key)
        server = server.rstrip("/")
        try:
            with httpx.Client(base_url=server, timeout=20, follow_redirects=False) as client:
                headers = {
                    "X-CSRF-Token": client.get("/api/auth/csrf").raise_for_status().json()["csrf_token"]
                }
                answer = client.post(
                    "/api/auth/login/certificate/challenge", json={"tenant": tenant}, headers=headers
                )
                if answer.status_code != 200:
                    raise InputError(f"{server}: {answer.json().get('detail', answer.text)}")
                challenge = answer.json()
                # Sign only for the server we are talking to: a relaying server would name another audience.
                if challenge["audience"].rstrip("/") != server:
                    raise InputError(f"{server} asked for a signature for {challenge['audience']}; refusing")
                signature = sign_challenge(
                    private, challenge["tenant"], challenge["audience"], challenge["challenge"]
                )
                result = client.post(
                    "/api/auth/login/certificate/verify",
                    headers=headers,
                    json={
                        "tenant": challenge["tenant"],
                        "handle": challenge["handle"],
                        "certificate": chain.decode("ascii"),
                        "signature": signature,
                    },
                )
                if result.status_code != 200:
                    raise InputError(f"{server}: sign-in refused: {result.json().get('detail', result.text)}")
                cookies = {name: value for name, value in client.cookies.items() if "tianmu_session" in name}
                body = result.json()
        except httpx.HTTPError as exc:
            raise InputError(f"{server}: {exc}") from exc
        if not body["done"]:
            err_console.print(
                f"certificate accepted; this tenant also requires: {' or '.join(body['remaining'])}"
            )
            raise typer.Exit(ExitCode.FINDINGS)
        home = session.settings.home
        home.mkdir(parents=True, exist_ok=True)
        record = {"server": server, "tenant": challenge["tenant"], "cookies": cookies}
        write_private(home / "session.json", jsonlib.dumps(record).encode("utf-8"))
        out_console.print(
            f"signed in to {server} (tenant {challenge['tenant']}) with {' + '.join(body['factors'])}"
        )

    @app.command("serve")
    @cli_errors
    def serve(
        ctx: typer.Context,
        host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port.")] = 8000,
    ) -> None:
        """Run the Tianmu web service (sign-in pages, API, dashboard)."""
        # uvicorn: heavy, optional for every command but serve.
        import uvicorn

        # FastAPI (the platform app; the tianmu.service package loads it): heavy, optional but for serve.
        from tianmu.service.platform import create_platform_app
        from tianmu.service.settings import ServiceSettings  # FastAPI: optional, as above

        # The whole platform: sign-in, REST API, dashboard and the job runner (TIANMU_RUNNER), with the
        # service settings read from the environment this invocation started with.
        application = create_platform_app(ServiceSettings.from_env(CliSession.of(ctx).environ))
        uvicorn.run(application, host=host, port=port, proxy_headers=False)
