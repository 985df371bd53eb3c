"""When a cron runs next (§6.2). Pure functions over Unix ns; no I/O, no clock.

An expression has 6 mandatory fields, seconds first (`sec min hour dom month dow`, robfig syntax, `?` read
as `*`), an optional `TZ=`/`CRON_TZ=` prefix, or is a descriptor: @yearly @annually @monthly @weekly
@daily @midnight @hourly, or `@every <Go duration>` (`10s`, `5m`, `1h30m`). Without a zone, expressions
use the server's local UTC offset at the time of computation.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from fractions import Fraction
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from colonies.clock import ZERO_TIME
from colonies.errors import BadRequest

NS = 1_000_000_000
US = 1_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# How far ahead a next run may be: 100 years keeps every stored time far inside int64 ns (which end in 2262).
MAX_AHEAD_S = 100 * 365 * 86_400
MAX_AHEAD_NS = MAX_AHEAD_S * NS

DESCRIPTORS = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}
_UNITS = {"ns": 1, "us": US, "µs": US, "μs": US, "ms": 1_000_000, "s": NS, "m": 60 * NS, "h": 3600 * NS}
_TERM = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


@dataclass(frozen=True)
class Schedule:
    """A parsed expression: a 6-field cron (in `tz`, None = local) or a constant delay."""

    fields: str = ""
    tz: tzinfo | None = None
    every_ns: int = 0


def to_ns(dt: datetime) -> int:
    """An aware datetime to Unix ns, exactly (no float rounding); Go's zero time (unset) is 0."""
    if dt == ZERO_TIME:
        return 0
    return (dt - EPOCH) // timedelta(microseconds=1) * US


def parse_duration(text: str) -> int:
    """A Go duration (`1h30m`, `1.5s`, `300ms`) in ns; exact (no float), at most MAX_AHEAD_NS."""
    pos, total = 0, Fraction(0)
    if text == "0":
        return 0
    for match in _TERM.finditer(text):
        if match.start() != pos:
            break
        total += Fraction(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise BadRequest(f"invalid duration {text!r}")
    if total > MAX_AHEAD_NS:
        raise BadRequest(f"cronexpression: @every {text} is longer than {MAX_AHEAD_S} seconds (100 years)")
    return int(total)


def parse(expression: str) -> Schedule:
    """Validate and parse an expression; 400 if it is not one."""
    text = expression.strip()
    tz: tzinfo | None = None
    if text.startswith(("TZ=", "CRON_TZ=")):
        zone, _, text = text.partition(" ")
        try:
            tz = ZoneInfo(zone.split("=", 1)[1])
        except (ZoneInfoNotFoundError, ValueError):
            raise BadRequest(f"unknown time zone in {expression!r}") from None
        text = text.strip()
    if text.startswith("@every"):
        every = parse_duration(text[len("@every"):].strip())
        if every <= 0:
            raise BadRequest("cronexpression: @every needs a positive duration")
        return Schedule(every_ns=max(every, NS))  # like robfig: at least one second
    fields = DESCRIPTORS.get(text.lower(), text).replace("?", "*")
    if len(fields.split()) != 6:
        raise BadRequest(f"invalid cron expression {expression!r}: need 6 fields, seconds first")
    sched = Schedule(fields=fields, tz=tz)
    next_match(sched, to_ns(EPOCH + timedelta(days=20_000)))  # raises if it never matches
    return sched


def next_match(sched: Schedule, after_ns: int) -> int:
    """The first time strictly after `after_ns` the schedule matches (whole seconds)."""
    if sched.every_ns:
        return after_ns // NS * NS + sched.every_ns
    seconds = after_ns // NS
    tz = sched.tz or datetime.fromtimestamp(seconds, UTC).astimezone().tzinfo
    try:
        found = next(CronSim(sched.fields, datetime.fromtimestamp(seconds, tz)))
    except (CronSimError, StopIteration, ValueError, OverflowError) as exc:
        raise BadRequest(f"invalid cron expression {sched.fields!r}: {exc}") from None
    return to_ns(found)


def validate(interval: int, expression: str, random_: bool, now_ns: int) -> None:
    """The add-time rules: interval 0 → 400; -1 means use the expression; random needs an interval;
    the interval, and the expression's next run, at most MAX_AHEAD_S ahead."""
    if interval == 0 or interval < -1:
        raise BadRequest("interval must be > 0, or -1 to use the cron expression")
    if interval > MAX_AHEAD_S:
        raise BadRequest(f"interval must be at most {MAX_AHEAD_S} seconds (100 years)")
    if random_ and interval <= 0:
        raise BadRequest("random can only be used with an interval, not with a cron expression")
    if interval == -1:
        next_run(interval, expression, random_, now_ns)


def next_run(interval: int, expression: str, random_: bool, now_ns: int,
             rng: random.Random | None = None) -> int:
    """When a cron should run next, computed from `now` (so after downtime it never catches up).

    * interval > 0: `now + interval`;
    * interval > 0 and random: a random instant of the next interval-long window, windows aligned to
      the Unix epoch; so it runs exactly once per window, at an unpredictable moment within it;
    * otherwise the next match of the expression.
    Results are whole microseconds, so they survive a round trip through a datetime. A result more than
    twice MAX_AHEAD_NS ahead (a huge interval stored before it was bounded) is a 400, never an overflow.
    """
    if interval > 0:
        window = interval * NS
        if random_:
            start = (now_ns // window + 1) * window
            found = start + (rng or random.Random()).randrange(window // US) * US
        else:
            found = (now_ns + window) // US * US
        what = "interval"
    else:
        found = next_match(parse(expression), now_ns) // US * US
        what = "cronexpression"
    if found - now_ns > 2 * MAX_AHEAD_NS:  # a random window's run can be up to two intervals ahead
        raise BadRequest(f"{what}: the next run is out of range")
    return found
