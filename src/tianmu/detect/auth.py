"""What Linux authentication messages say: sshd, sudo, su, useradd/groupadd/usermod, passwd, pam_unix.

Syslog and journald readers hand the program name and message here; the fields returned are what our
rules and the correlation engine group by: `event_action` (what happened), `user`, `target_user`,
`src_ip`, `src_port`, `auth_method`, `command`... Messages of other programs return nothing.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["AUTH_PROGRAMS", "parse_auth_message"]

AUTH_PROGRAMS = frozenset(
    {"sshd", "sudo", "su", "useradd", "groupadd", "usermod", "userdel", "passwd", "chpasswd", "login"}
)

_IP = r"(?P<src_ip>[0-9A-Fa-f.:]+)"
_SSHD = [
    (
        re.compile(
            rf"^Failed (?P<auth_method>\S+) for (?:invalid user )?(?P<user>.*?) from {_IP} port (?P<src_port>\d+)"
        ),
        "ssh_login_failed",
    ),
    (
        re.compile(rf"^Accepted (?P<auth_method>\S+) for (?P<user>\S+) from {_IP} port (?P<src_port>\d+)"),
        "ssh_login_accepted",
    ),
    (re.compile(rf"^Invalid user (?P<user>.*?) from {_IP}(?: port (?P<src_port>\d+))?"), "ssh_invalid_user"),
    (
        re.compile(rf"^Connection closed by (?:authenticating |invalid )?(?:user (?P<user>\S+) )?{_IP}"),
        "ssh_closed",
    ),
    (re.compile(rf"^Received disconnect from {_IP}"), "ssh_disconnect"),
    (
        re.compile(rf"^Disconnected from (?:authenticating |invalid )?(?:user (?P<user>\S+) )?{_IP}"),
        "ssh_disconnect",
    ),
    (
        re.compile(
            rf"^error: maximum authentication attempts exceeded for (?:invalid user )?(?P<user>\S+) from {_IP}"
        ),
        "ssh_max_attempts",
    ),
    (re.compile(rf"^Did not receive identification string from {_IP}"), "ssh_no_identification"),
    (re.compile(r"POSSIBLE BREAK-IN ATTEMPT"), "ssh_break_in_attempt"),
]
_SUDO_COMMAND = re.compile(
    r"^\s*(?P<user>\S+) : (?:(?P<reason>[^;]*?) ; )?TTY=(?P<tty>[^;]*) ; PWD=(?P<pwd>[^;]*) ; "
    r"USER=(?P<target_user>[^;]*) ;(?: [^;]* ;)* COMMAND=(?P<command>.*)$"
)
_PAM_FAILURE = re.compile(
    r"pam_unix\((?P<service>[^:)]+):auth\): authentication failure;.*?ruser=(?P<ruser>\S*) "
    r"rhost=(?P<src_ip>\S*)(?:\s+user=(?P<user>\S+))?"
)
_PAM_SESSION = re.compile(
    r"pam_unix\((?P<service>[^:)]+):session\): session (?P<state>opened|closed) for user (?P<target_user>[^(\s]+)"
    r"(?:\(uid=\d+\))?(?: by (?P<user>[^(\s]*))?"
)
_SU = [
    (re.compile(r"^(?:Successful su for (?P<target_user>\S+) by (?P<user>\S+))"), "su_success"),
    (re.compile(r"^FAILED SU \(to (?P<target_user>[^)]+)\) (?P<user>\S+)"), "su_failure"),
    (re.compile(r"^\(to (?P<target_user>[^)]+)\) (?P<user>\S+) on"), "su_success"),
]
_NEW_USER = re.compile(
    r"^new user: name=(?P<target_user>[^,]+), UID=(?P<uid>\d+)(?:, GID=(?P<gid>\d+))?(?:, home=(?P<home>[^,]+))?(?:, shell=(?P<shell>[^,]+))?"
)
_NEW_GROUP = re.compile(r"^new group: name=(?P<group>[^,]+), GID=(?P<gid>\d+)")
_ADD_TO_GROUP = re.compile(r"^add '(?P<target_user>[^']+)' to (?:shadow )?group '(?P<group>[^']+)'")
_DEL_USER = re.compile(r"^delete user '(?P<target_user>[^']+)'")
_PASSWD = re.compile(r"password changed for (?P<target_user>\S+)")


def _groups(match: re.Match[str]) -> dict[str, Any]:
    return {key: value for key, value in match.groupdict().items() if value}


def parse_auth_message(program: str, message: str) -> dict[str, Any]:
    """Fields for one authentication message, or an empty dict when it says nothing we model."""
    name = program.split("(", 1)[0].lower()
    if name == "sshd":
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
