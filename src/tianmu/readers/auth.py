"""What Linux authentication messages say: sshd, sudo, su, useradd/groupadd/usermod, passwd, pam_unix.

Syslog and journald readers hand the program name and message here; the fields returned are what our
rules and the correlation engine group by: `event_action` (what happened), `user`, `target_user`,
`src_ip`, `src_port`, `auth_method`, `command`... Messages of other programs return nothing.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

__all__ = ["AUTH_PROGRAMS", "SSHD_PROGRAMS", "parse_auth_message"]

AUTH_PROGRAMS = frozenset(
    {
        "sshd",
        "sshd-session",
        "sshd-auth",
        "sudo",
        "su",
        "useradd",
        "groupadd",
        "usermod",
        "userdel",
        "passwd",
        "chpasswd",
        "login",
    }
)

_SRC = r"(?P<src>[0-9A-Za-z_.:%-]+)"
_PREFIX = r"^(?:\[ID \d+ [\w.]+\] )?(?:error: )?"
_SSHD = [
    (
        re.compile(
            _PREFIX + r"Failed (?P<auth_method>\S+) for (?:invalid user |illegal user )?(?P<user>.*?) from "
            rf"{_SRC}(?: port (?P<src_port>\d+))?(?: ssh\d?)?(?::|\s|$)"
        ),
        "ssh_login_failed",
    ),
    (
        re.compile(
            _PREFIX + rf"Accepted (?P<auth_method>\S+) for (?P<user>\S+) from {_SRC} port (?P<src_port>\d+)"
        ),
        "ssh_login_accepted",
    ),
    (
        re.compile(
            _PREFIX + r"PAM: (?:User not known to the underlying authentication module"
            r"|Authentication (?:failure|error))"
            rf" for (?:illegal user )?(?P<user>\S+) from {_SRC}",
            re.IGNORECASE,
        ),
        "ssh_login_failed",
    ),
    (re.compile(_PREFIX + rf"ROOT LOGIN REFUSED FROM {_SRC}"), "ssh_login_failed"),
    (
        re.compile(_PREFIX + rf"[Ii]nvalid user (?P<user>.*?) from {_SRC}(?: port (?P<src_port>\d+))?"),
        "ssh_invalid_user",
    ),
    (re.compile(_PREFIX + rf"User (?P<user>\S+) from {_SRC} not allowed because"), "ssh_user_not_allowed"),
    (
        re.compile(
            _PREFIX
            + rf"maximum authentication attempts exceeded for (?:invalid user )?(?P<user>\S+) from {_SRC}"
        ),
        "ssh_max_attempts",
    ),
    (re.compile(rf"^refused connect from \S*?\(?{_SRC}\)?$"), "ssh_refused_connect"),
    (
        re.compile(
            _PREFIX
            + rf"Connection (?:closed|reset) by (?:authenticating |invalid )?(?:user (?P<user>\S+) )?{_SRC}"
        ),
        "ssh_closed",
    ),
    (re.compile(_PREFIX + rf"Received disconnect from {_SRC}"), "ssh_disconnect"),
    (
        re.compile(
            _PREFIX + rf"Disconnected from (?:authenticating |invalid )?(?:user (?P<user>\S+) )?{_SRC}"
        ),
        "ssh_disconnect",
    ),
    (re.compile(_PREFIX + rf"Did not receive identification string from {_SRC}"), "ssh_no_identification"),
    (re.compile(r"POSSIBLE BREAK-IN ATTEMPT"), "ssh_break_in_attempt"),
]
SSHD_PROGRAMS = frozenset({"sshd", "sshd-session", "sshd-auth"})
_SUDO_COMMAND = re.compile(
    r"^\s*(?P<user>\S+) : (?:(?P<reason>[^;]*?) ; )?TTY=(?P<tty>[^;]*) ; PWD=(?P<pwd>[^;]*) ; "
    r"USER=(?P<target_user>[^;]*) ;(?: [^;]* ;)* COMMAND=(?P<command>.*)$"
)
_PAM_FAILURE = re.compile(
    r"authentication failure;.*?\bruser=(?P<ruser>\S*)\s+rhost=(?P<src>\S*)(?:\s+user=(?P<user>\S+))?"
)
_PAM_SESSION = re.compile(
    r"pam_unix\((?P<service>[^:)]+):session\): session (?P<state>opened|closed) "
    r"for user (?P<target_user>[^(\s]+)"
    r"(?:\(uid=\d+\))?(?: by (?P<user>[^(\s]*))?"
)
_SU = [
    (re.compile(r"^(?:Successful su for (?P<target_user>\S+) by (?P<user>\S+))"), "su_success"),
    (re.compile(r"^FAILED SU \(to (?P<target_user>[^)]+)\) (?P<user>\S+)"), "su_failure"),
    (re.compile(r"^\(to (?P<target_user>[^)]+)\) (?P<user>\S+) on"), "su_success"),
]
_NEW_USER = re.compile(
    r"^new user: name=(?P<target_user>[^,]+), UID=(?P<uid>\d+)(?:, GID=(?P<gid>\d+))?"
    r"(?:, home=(?P<home>[^,]+))?(?:, shell=(?P<shell>[^,]+))?"
)
_NEW_GROUP = re.compile(r"^new group: name=(?P<group>[^,]+), GID=(?P<gid>\d+)")
_ADD_TO_GROUP = re.compile(r"^add '(?P<target_user>[^']+)' to (?:shadow )?group '(?P<group>[^']+)'")
_DEL_USER = re.compile(r"^delete user '(?P<target_user>[^']+)'")
_PASSWD = re.compile(r"password changed for (?P<target_user>\S+)")


def _groups(match: re.Match[str]) -> dict[str, Any]:
    fields = {key: value for key, value in match.groupdict().items() if value}
    source = fields.pop("src", None)
    if source:
        source = source.rstrip(":")
        # Addresses as `src_ip` (IPv4-mapped IPv6 unwrapped); names a resolver gave as `src_host`.
        address = source.removeprefix("::ffff:")
        try:
            fields["src_ip"] = str(ipaddress.ip_address(address))
        except ValueError:
            fields["src_host"] = source
    return fields


def parse_auth_message(program: str, message: str) -> dict[str, Any]:
    """Fields for one authentication message, or an empty dict when it says nothing we model."""
    name = program.split("(", 1)[0].lower()
    if name in SSHD_PROGRAMS:
        for pattern, action in _SSHD:
            found = pattern.search(message)
            if found:
                return {"event_action": action, **_groups(found)}
    if name == "sudo":
        found = _SUDO_COMMAND.match(message)
        if found:
            fields = _groups(found)
            reason = fields.pop("reason", "")
            action = "sudo_command"
            if "incorrect password" in reason or "NOT in sudoers" in reason or "not allowed" in reason:
                action = "sudo_denied"
                fields["reason"] = reason.strip()
            return {"event_action": action, **fields}
    if name == "su":
        for pattern, action in _SU:
            found = pattern.search(message)
            if found:
                return {"event_action": action, **_groups(found)}
    if name in ("useradd", "adduser"):
        for pattern, action in ((_NEW_USER, "user_added"), (_NEW_GROUP, "group_added")):
            found = pattern.search(message)
            if found:
                return {"event_action": action, **_groups(found)}
    if name in ("groupadd",):
        found = _NEW_GROUP.search(message)
        if found:
            return {"event_action": "group_added", **_groups(found)}
    if name in ("usermod", "gpasswd", "useradd"):
        found = _ADD_TO_GROUP.search(message)
        if found:
            return {"event_action": "user_added_to_group", **_groups(found)}
    if name == "userdel":
        found = _DEL_USER.search(message)
        if found:
            return {"event_action": "user_deleted", **_groups(found)}
    failure = _PAM_FAILURE.search(message)
    if failure:
        fields = _groups(failure)
        return {"event_action": "pam_auth_failure", **fields}
    session = _PAM_SESSION.search(message)
    if session:
        fields = _groups(session)
        return {"event_action": f"session_{fields.pop('state')}", **fields}
    if name in ("passwd", "chpasswd") or "passwd:chauthtok" in message:
        found = _PASSWD.search(message)
        if found:
            return {"event_action": "password_changed", **_groups(found)}
    return {}
