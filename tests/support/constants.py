"""Constants the tests share."""

from __future__ import annotations

# The password of every seeded user.
PASSWORD = "correct-horse-battery"
# Cheap hashing in tests; the production default (N = 2^16) has its own test.
FAST_HASH = "scrypt:1024:8:1"
