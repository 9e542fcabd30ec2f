"""The device timeline: state machine (`machine`), event sources (`sources`), storage (`store`), the
asyncio recorder (`recorder`) and the offline table (`status`)."""

from __future__ import annotations
