"""API tokens: scopes, hashing, lookup. Tokens are random strings handed out once
(`callkpi tokens new`); the config holds only their SHA-256, so a leaked config
file does not leak a usable token. A slow password hash buys nothing here: the
tokens carry 256 random bits, not a human's password.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.core.configfile import repeated

Scope = Literal["ingest", "read", "payroll", "admin"]
SCOPES: tuple[Scope, ...] = ("ingest", "read", "payroll", "admin")
TOKEN_PREFIX = "ck_"


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Token(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.@-]+$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: list[Scope] = Field(min_length=1)


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token's name and scopes, or `anonymous` when auth is off."""

    name: str
    scopes: frozenset[str]

    def allows(self, scope: Scope) -> bool:
        # admin can do everything the other scopes can
        return scope in self.scopes or "admin" in self.scopes


ANONYMOUS = Principal("anonymous", frozenset(SCOPES))


class AuthSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # none configured: every endpoint is open (a warning is logged at start)
    tokens: list[Token] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> AuthSettings:
        names = [t.name for t in self.tokens]
        hashes = [t.sha256 for t in self.tokens]
        for label, values in (("name", names), ("sha256", hashes)):
            dup = repeated(values)
            if dup:
                raise ValueError(f"tokens: {label} used twice: {dup[0][:16]}")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.tokens)

    def principal(self, token: str) -> Principal | None:
        digest = token_hash(token)
        found = None
        for t in self.tokens:
            # compare every entry in constant time: no early exit to time
            if hmac.compare_digest(t.sha256, digest):
                found = Principal(t.name, frozenset(t.scopes))
        return found
