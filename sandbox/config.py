"""Every setting of the sandbox: its environment variable (the same name as the config key), its default, its meaning.

Order: the embedded defaults below, then the environment, then create_app's test_config. The sandbox reads no setting
of the portal: it is a separate party that knows the merchants only from its own registry (sandbox/registry.py).

| setting | default | meaning |
|---|---|---|
| SANDBOX_DATABASE_URL | sqlite:///<repo>/instance/sandbox.db | the sandbox's own database (tables made at start) |
| SANDBOX_SECRET_KEY | generated once into instance/sandbox_secret_key | signs the sandbox pages' sessions (CSRF) |
| SANDBOX_PORTAL_URL | http://127.0.0.1:5000 | the merchant's server: Oen and MyPay callbacks of a merchant that |
|  |  | registered no URL of its own go to {it}/webhooks/oen and /webhooks/mypay |
| SANDBOX_MYPAY_AGENT_UID | 518169081001 | the MyPay agent the sandbox accepts (the document's test agent) |
| SANDBOX_MYPAY_AGENT_KEY | 2MrhtRYeF9wKZ4bKwzZoL8aZf26pWzIG | that agent's key (32 bytes) |
| SANDBOX_MYPAY_AGENT_NEXT_KEY | (empty) | the agent's next key, also accepted while keys rotate |
| SANDBOX_OPAY_PLATFORM_ID | 2012441 | the O'Pay platform the sandbox accepts (the document's stage platform) |
| SANDBOX_OPAY_PLATFORM_HASH_KEY | bkuAEQufy2bpEng1 | that platform's HashKey |
| SANDBOX_OPAY_PLATFORM_HASH_IV | B0lzARl9ZSdhW9jg | that platform's HashIV |
| SANDBOX_LATENCY_MS | 0 | delay before every simulated provider answer |
| SANDBOX_LATENCY_MS_OEN / _MYPAY / _OPAY | SANDBOX_LATENCY_MS | the same, per provider |
| SANDBOX_HANG_S | 12 | how long a `hang_next` fault holds the answer (longer than the merchant's timeout) |
| SANDBOX_OEN_FULL_CARD_NUMBER | true | Oen answers the whole test card number in cardNum, as its document shows |
| SANDBOX_CALLBACK_SYNC | false | send callbacks (and their resends) inside the request instead of a thread |
| SANDBOX_CALLBACK_RETRY_DELAY_S | 3 | seconds between MyPay callback attempts |
| SANDBOX_CALLBACK_TIMEOUT_S | 10 | timeout of one callback POST |
| SANDBOX_MYPAY_CALLBACK_FORMAT | form | `form` (arrays as JSON text) or `json` |
| SANDBOX_SMTP_PORT | `python -m sandbox`: its port + 1; | the mail catcher's SMTP port on 127.0.0.1 (sandbox/mail.py) |
|  | other servers: unset (none) | its mails shown at /mail; 0 = no catcher. Under gunicorn only when |
|  |  | set, and then one per server (the first worker to bind it), not one per worker |

The console can override the latency and the Oen card-number switch at run time (stored in the database).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INSTANCE = ROOT / "instance"

# The test agent and stage platform of the provider documents: public test values, never production credentials.
TEST_MYPAY_AGENT_UID = "518169081001"
TEST_MYPAY_AGENT_KEY = "2MrhtRYeF9wKZ4bKwzZoL8aZf26pWzIG"  # nosec B105
STAGE_OPAY_PLATFORM = ("2012441", "bkuAEQufy2bpEng1", "B0lzARl9ZSdhW9jg")

# name: (default, type, meaning). A default of None is derived in derive().
SETTINGS: dict[str, tuple[object, type, str]] = {
    "SANDBOX_DATABASE_URL": (None, str, "the sandbox's database; default instance/sandbox.db"),
    "SANDBOX_SECRET_KEY": (None, str, "signs the sandbox pages' sessions; default generated into instance/"),
    "SANDBOX_PORTAL_URL": ("http://127.0.0.1:5000", str, "the merchant's server, where callbacks go by default"),
    "SANDBOX_MYPAY_AGENT_UID": (TEST_MYPAY_AGENT_UID, str, "the MyPay agent uid the sandbox accepts"),
    "SANDBOX_MYPAY_AGENT_KEY": (TEST_MYPAY_AGENT_KEY, str, "that agent's key (32 bytes)"),
    "SANDBOX_MYPAY_AGENT_NEXT_KEY": ("", str, "the agent's next key, accepted too while keys rotate"),
    "SANDBOX_OPAY_PLATFORM_ID": (STAGE_OPAY_PLATFORM[0], str, "the O'Pay platform id the sandbox accepts"),
    "SANDBOX_OPAY_PLATFORM_HASH_KEY": (STAGE_OPAY_PLATFORM[1], str, "that platform's HashKey"),
    "SANDBOX_OPAY_PLATFORM_HASH_IV": (STAGE_OPAY_PLATFORM[2], str, "that platform's HashIV"),
    "SANDBOX_LATENCY_MS": (0, int, "delay before every simulated provider answer"),
    "SANDBOX_LATENCY_MS_OEN": (None, int, "the same for Oen; default SANDBOX_LATENCY_MS"),
    "SANDBOX_LATENCY_MS_MYPAY": (None, int, "the same for MyPay; default SANDBOX_LATENCY_MS"),
    "SANDBOX_LATENCY_MS_OPAY": (None, int, "the same for O'Pay; default SANDBOX_LATENCY_MS"),
    "SANDBOX_HANG_S": (12.0, float, "how long a hang_next fault holds the answer"),
    "SANDBOX_OEN_FULL_CARD_NUMBER": (True, bool, "Oen answers the whole test card number in cardNum"),
    "SANDBOX_CALLBACK_SYNC": (False, bool, "send callbacks inside the request instead of a thread"),
    "SANDBOX_CALLBACK_RETRY_DELAY_S": (3.0, float, "seconds between MyPay callback attempts"),
    "SANDBOX_CALLBACK_TIMEOUT_S": (10.0, float, "timeout of one callback POST"),
    "SANDBOX_MYPAY_CALLBACK_FORMAT": ("form", str, "form (arrays as JSON text) or json"),
    "SANDBOX_SMTP_PORT": (None, int, "the mail catcher's port; default the HTTP port + 1 under python -m sandbox"),
}

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}


def _typed(name: str, raw: str):
    kind = SETTINGS[name][1]
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered not in TRUE | FALSE:
            raise ValueError(f"{name} must be true or false, not {raw!r}")
        return lowered in TRUE
    return kind(raw)


def defaults() -> dict[str, object]:
    """The embedded defaults that need no file or environment."""
    return {name: value for name, (value, _kind, _meaning) in SETTINGS.items() if value is not None}


def from_environment() -> dict[str, object]:
    """The settings present in the environment, typed."""
    return {name: _typed(name, os.environ[name]) for name in SETTINGS if name in os.environ}


def instance_secret(instance_path: Path, name: str, nbytes: int = 48) -> str:
    """A secret generated once into instance/<name> (0600), safe when several processes start at once.

    The secret is written whole to a temporary file first, then linked to its name: a process that starts at the
    same moment either finds no file (and links its own, losing the race harmlessly) or a complete one, never an
    empty or half-written one.
    """
    path = Path(instance_path) / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{name}.", dir=path.parent)  # mkstemp creates it 0600
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(nbytes))
                fh.flush()
                os.fsync(fh.fileno())
            with contextlib.suppress(FileExistsError):  # another process won the race: its secret is the one
                os.link(temp, path)
        finally:
            os.unlink(temp)
    return path.read_text().strip()


def _sqlite_file(url: str) -> Path | None:
    """The file of a sqlite:/// URL, else None."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url[len(prefix) :] in ("", ":memory:"):
        return None
    return Path(url[len(prefix) :].split("?", 1)[0])


def derive(config: dict, instance_path: Path) -> None:
    """Fill the settings whose defaults depend on instance/, and the Flask and SQLAlchemy keys they feed."""
    instance_path = Path(instance_path)
    if not config.get("SANDBOX_DATABASE_URL"):
        config["SANDBOX_DATABASE_URL"] = f"sqlite:///{instance_path / 'sandbox.db'}"
    database = _sqlite_file(str(config["SANDBOX_DATABASE_URL"]))
    if database is not None and not database.exists():
        database.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT, 0o600))  # the simulator's secrets live in it: 0600
    config["SQLALCHEMY_DATABASE_URI"] = config["SANDBOX_DATABASE_URL"]
    config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {"pool_pre_ping": True})
    if not config.get("SANDBOX_SECRET_KEY"):
        config["SANDBOX_SECRET_KEY"] = instance_secret(instance_path, "sandbox_secret_key")
    config["SECRET_KEY"] = config["SANDBOX_SECRET_KEY"]
    config["SANDBOX_PORTAL_URL"] = str(config.get("SANDBOX_PORTAL_URL") or "").rstrip("/")
    if config.get("SANDBOX_MYPAY_CALLBACK_FORMAT") not in ("form", "json"):
        raise ValueError("SANDBOX_MYPAY_CALLBACK_FORMAT must be form or json")
    # Cookies ignore ports: on 127.0.0.1 beside the portal, a cookie named `session` would replace the portal's login.
    # A real provider has a host of its own; the sandbox has a cookie name of its own.
    config["SESSION_COOKIE_NAME"] = "sandbox_session"
    config["WTF_CSRF_TIME_LIMIT"] = None  # a page may stay open a long time before the customer pays
    config["MAX_CONTENT_LENGTH"] = 1024 * 1024
