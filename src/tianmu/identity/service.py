"""IdentityService: the one entry point the API, the dashboard and the CLI call for identity.

It owns no global state: the application factory (or a CLI command) builds one from a Store, the
key-encryption key, the WebAuthn relying party and a clock, and passes it down. It is a facade over the
parts that do the work, each owning its own tables and rules:

    accounts    tenants, policies, users, roles, passwords          (`tianmu.identity.accounts`)
    ca          the tenant CA, trusted CAs, login certificates      (`tianmu.identity.certificates`)
    enrolment   TOTP apps and passkeys of a user                    (`tianmu.identity.enrolment`)
    signin      the sign-in flows and the policy combining factors  (`tianmu.identity.signin`)
    lockout     rate limits and account lockout                     (`tianmu.identity.lockout`)
    sessions    sessions behind the cookie                          (`tianmu.identity.sessions`)
    tokens      API tokens                                          (`tianmu.identity.tokens`)

Callers keep one object to pass around (one FastAPI dependency, one `app.state.identity`) and one flat
set of method names; each of those names *is* the part's method, bound here, so there is no second copy
of any signature to keep in step. Every change and every authentication is written to the audit chain in
the same transaction as the change itself; every comparison with "now" asks the clock given here.
"""

from __future__ import annotations

from pathlib import Path

from tianmu.core.clock import Clock, SystemClock
from tianmu.identity.accounts import Accounts
from tianmu.identity.audit import AuditLog
from tianmu.identity.audittip import TIP_FILE
from tianmu.identity.certificates import TenantCA
from tianmu.identity.challenges import Challenges
from tianmu.identity.enrolment import Enrolment
from tianmu.identity.keys import Keyring
from tianmu.identity.lockout import Lockout
from tianmu.identity.models import RelyingParty
from tianmu.identity.sessions import Sessions
from tianmu.identity.signin import SignIn
from tianmu.identity.tokens import Tokens
from tianmu.store.database import Store

__all__ = ["IdentityService"]


class IdentityService:
    def __init__(
        self,
        store: Store,
        *,
        home: Path,
        kek: bytes | None = None,
        rp: RelyingParty | None = None,
        clock: Clock | None = None,
        checkpoint_every: int = 100,
    ) -> None:
        self.store = store
        self.home = home
        self.rp = rp or RelyingParty()
        self.clock: Clock = clock or SystemClock()
        self.keyring = Keyring(home, kek)
        self.kek = self.keyring.kek
        self.audit = AuditLog(
            store,
            self.keyring.platform_key,
            checkpoint_every=checkpoint_every,
            tip_path=home / TIP_FILE,
            clock=self.clock,
        )
        clock, audit = self.clock, self.audit
        challenges = Challenges(store, clock)
        self.lockout = Lockout(store, clock, audit)
        self.sessions = Sessions(store, clock, audit)
        self.tokens = Tokens(store, clock, audit)
        self.accounts = Accounts(store, clock, audit, lockout=self.lockout, sessions=self.sessions)
        self.ca = TenantCA(store, clock, audit, self.keyring)
        self.enrolment = Enrolment(
            store,
            clock,
            audit,
            keyring=self.keyring,
            rp=self.rp,
            challenges=challenges,
            accounts=self.accounts,
        )
        self.signin = SignIn(
            store,
            clock,
            audit,
            keyring=self.keyring,
            rp=self.rp,
            challenges=challenges,
            lockout=self.lockout,
            sessions=self.sessions,
            ca=self.ca,
        )

        self.platform_key = self.keyring.platform_key

        accounts = self.accounts
        self.create_tenant = accounts.create_tenant
        self.get_tenant = accounts.get_tenant
        self.list_tenants = accounts.list_tenants
        self.set_policy = accounts.set_policy
        self.create_user = accounts.create_user
        self.get_user = accounts.get_user
        self.get_user_by_id = accounts.get_user_by_id
        self.list_users = accounts.list_users
        self.set_role = accounts.set_role
        self.set_password = accounts.set_password
        self.change_own_password = accounts.change_own_password
        self.set_disabled = accounts.set_disabled
        self.unlock = accounts.unlock
        self.delete_user = accounts.delete_user

        self.init_tenant_ca = self.ca.init
        self.trust_ca = self.ca.trust
        self.trusted_cas = self.ca.trusted
        self.issue_user_certificate = self.ca.issue_user_certificate
        self.revoke_certificate = self.ca.revoke

        enrolment = self.enrolment
        self.enable_totp = enrolment.enable_totp
        self.totp_enrol_start = enrolment.totp_enrol_start
        self.totp_enrol_confirm = enrolment.totp_enrol_confirm
        self.passkey_register_options = enrolment.passkey_register_options
        self.passkey_register_verify = enrolment.passkey_register_verify
        self.list_passkeys = enrolment.list_passkeys
        self.remove_passkey = enrolment.remove_passkey

        signin = self.signin
        self.password_login = signin.password_login
        self.totp_login = signin.totp_login
        self.passkey_login_options = signin.passkey_login_options
        self.passkey_login_verify = signin.passkey_login_verify
        self.cert_login_challenge = signin.cert_login_challenge
        self.cert_login_verify = signin.cert_login_verify

        self.session_principal = self.sessions.principal
        self.end_session = self.sessions.end

        self.create_token = self.tokens.create
        self.token_principal = self.tokens.principal
        self.list_tokens = self.tokens.owned_by
        self.revoke_token = self.tokens.revoke
