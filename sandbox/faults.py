"""Fault switches, stored in the database so every worker process sees them; callable from tests and the console.

    from sandbox import faults
    faults.set("mypay", "fail_next")            # the next MyPay API call answers HTTP 500, nothing is done
    faults.set("oen", "fail_after_next")         # the next Oen call is carried out, then answers HTTP 500
    faults.set("opay", "hang_next")              # the next O'Pay call waits SANDBOX_HANG_S (12 s), then runs
    faults.set("mypay", "drop_next_callback")    # the next MyPay callback is never sent
    faults.clear()                               # all switches off

Call inside an application context of the sandbox.
"""

from __future__ import annotations

from sqlalchemy import update

from sandbox.extensions import db
from sandbox.models import SandboxFault

PROVIDERS = ("oen", "mypay", "opay")
API_FAULTS = ("fail_next", "fail_after_next", "hang_next")
CALLBACK_FAULTS = ("drop_next_callback",)
KINDS = API_FAULTS + CALLBACK_FAULTS


def _check(provider: str, kind: str | None = None) -> None:
    if provider not in PROVIDERS:
        raise ValueError(f"provider must be one of {PROVIDERS}, not {provider!r}")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"fault must be one of {KINDS}, not {kind!r}")


def set(provider: str, kind: str, count: int = 1) -> None:
    """Arm a fault for the provider's next `count` API calls (or callbacks)."""
    _check(provider, kind)
    fault = db.session.execute(db.select(SandboxFault).filter_by(provider=provider, kind=kind)).scalar_one_or_none()
    if fault is None:
        fault = SandboxFault(provider=provider, kind=kind)
        db.session.add(fault)
    fault.remaining = max(int(count), 0)
    db.session.commit()


def clear(provider: str | None = None) -> None:
    """Disarm every fault (of one provider, or of all)."""
    query = db.delete(SandboxFault)
    if provider is not None:
        _check(provider)
        query = query.where(SandboxFault.provider == provider)
    db.session.execute(query)
    db.session.commit()


def pending(provider: str | None = None) -> dict[str, dict[str, int]]:
    """The armed faults: {provider: {kind: remaining}}."""
    query = db.select(SandboxFault).where(SandboxFault.remaining > 0)
    if provider is not None:
        query = query.where(SandboxFault.provider == provider)
    armed: dict[str, dict[str, int]] = {}
    for fault in db.session.execute(query).scalars():
        armed.setdefault(fault.provider, {})[fault.kind] = fault.remaining
    return armed


def take(provider: str, kinds: tuple[str, ...] = API_FAULTS) -> str | None:
    """Use up one armed fault of the kinds given (first armed wins), atomically across processes."""
    for kind in kinds:
        result = db.session.execute(
            update(SandboxFault)
            .where(SandboxFault.provider == provider, SandboxFault.kind == kind, SandboxFault.remaining > 0)
            .values(remaining=SandboxFault.remaining - 1)
        )
        db.session.commit()
        if result.rowcount:
            return kind
    return None
