"""Tianmu's error tree.

    TianmuError
    ├── ConfigError            bad settings or environment
    ├── InputError             a file or value we were given is not what it should be (has a location)
    │   └── ParseError         ...in a format we understand, but malformed at a given line
    ├── KnowledgeBaseError     a knowledge base cannot be imported or is missing
    └── StoreError             the database cannot be opened or migrated

    Interrupted (a BaseException)  the job must stop now: cancelled by its user

Errors that carry a location render as ``path:line: message`` so the CLI can print them as they are.
Loaders collect InputErrors and go on with the next file; only when nothing at all could be read does the
CLI exit with code 2.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "InputError",
    "Interrupted",
    "KnowledgeBaseError",
    "ParseError",
    "StoreError",
    "TianmuError",
]


class TianmuError(Exception):
    """Base of every error Tianmu raises on purpose."""


class ConfigError(TianmuError):
    pass


class InputError(TianmuError):
    """A problem with an input, tied to the file (and line) where it was seen."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line

    def __str__(self) -> str:
        where = ""
        if self.path:
            where = f"{self.path}:{self.line}: " if self.line else f"{self.path}: "
        return f"{where}{self.message}"


class ParseError(InputError):
    pass


class KnowledgeBaseError(TianmuError):
    pass


class StoreError(TianmuError):
    pass


class Interrupted(BaseException):
    """The job must stop now (its cancellation was requested).

    A BaseException, like KeyboardInterrupt, on purpose: engines and readers isolate a failing record
    or engine with `except Exception` and go on, and a cancel must pass through every one of them.
    """
