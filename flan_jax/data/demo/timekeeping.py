"""Calendar and clock families: date arithmetic, and (held out) clock arithmetic."""

from __future__ import annotations

import calendar
import datetime
import random
from collections.abc import Iterator

from flan_jax.data.demo._base import MONTHS, WEEKDAYS, Example, generate, plural, with_options

# ---------------------------------------------------------------------------- date arithmetic


def format_date(day: datetime.date) -> str:
    """``'April 6, 2021'``."""
    return f"{MONTHS[day.month - 1]} {day.day}, {day.year}"


def _month_day(day: datetime.date) -> str:
    return f"{MONTHS[day.month - 1]} {day.day}"


def _weekday_steps(start: int, days: int, step: int) -> str:
    """Walk ``days`` weekdays from ``start`` (an index into WEEKDAYS), forward or back."""
    return ", ".join(WEEKDAYS[(start + step * i) % 7] for i in range(1, days + 1))


def _weekday_problem(rng: random.Random) -> tuple[str, str, str, list[str]]:
    start = rng.randrange(7)
    days = rng.randint(2, 30)
    forward = rng.random() < 0.6
    step = 1 if forward else -1
    answer = WEEKDAYS[(start + step * days) % 7]
    today = WEEKDAYS[start]
    if forward:
        question = f"Today is {today}. What day of the week will it be in {days} days?"
        direction = "on from"
    else:
        question = f"Today is {today}. What day of the week was it {days} days ago?"
        direction = "back from"
    weeks, rest = divmod(days, 7)
    if weeks == 0:
        rationale = f"Count {days} days {direction} {today}: {_weekday_steps(start, days, step)}."
    elif rest == 0:
        rationale = (
            f"{days} days is exactly {plural(weeks, 'week')}, and whole weeks do not change "
            f"the day of the week, which stays {today}."
        )
    else:
        rationale = (
            f"{days} days is {plural(weeks, 'week')} and {plural(rest, 'day')}. Whole weeks do "
            f"not change the day of the week, so count {plural(rest, 'day')} {direction} "
            f"{today}: {_weekday_steps(start, rest, step)}."
        )
    return question, rationale, answer, list(WEEKDAYS)


def _date_rationale(start: datetime.date, days: int) -> str:
    """Month by month: how ``days`` days after ``start`` crosses month ends."""
    sentences = []
    current, left = start, days
    while True:
        month = MONTHS[current.month - 1]
        length = calendar.monthrange(current.year, current.month)[1]
        if current.day + left <= length:
            end = current + datetime.timedelta(days=left)
            sentences.append(
                f"{month} has {length} days, and {current.day} + {left} = {end.day}, "
                f"so the date is {format_date(end)}."
            )
            return " ".join(sentences)
        to_next = length - current.day + 1
        first = current + datetime.timedelta(days=to_next)
        sentences.append(
            f"{month} has {length} days, so {plural(to_next, 'day')} after {_month_day(current)} "
            f"is {_month_day(first)}, leaving "
            f"{left} - {to_next} = {plural(left - to_next, 'day')}."
        )
        current, left = first, left - to_next
        if left == 0:
            sentences.append(f"The date is {format_date(current)}.")
            return " ".join(sentences)


def _date_problem(rng: random.Random) -> tuple[str, str, str, list[str]]:
    start = datetime.date(2019, 1, 1) + datetime.timedelta(days=rng.randrange(8 * 365))
    days = rng.randint(2, 45)
    end = start + datetime.timedelta(days=days)
    question = f"What date is {days} days after {format_date(start)}?"
    near = [end + datetime.timedelta(days=d) for d in (-1, 1, -7, 7, 30)]
    return question, _date_rationale(start, days), format_date(end), [format_date(d) for d in near]


def _make_date_arithmetic(rng: random.Random) -> Example:
    make = _weekday_problem if rng.random() < 0.5 else _date_problem
    question, rationale, answer, distractors = make(rng)
    return {
        "question": question,
        "answer": answer,
        "options": with_options(rng, answer, distractors, 4),
        "rationale": rationale,
    }


def date_arithmetic(split: str, num_examples: int, seed: int) -> Iterator[Example]:
    """Day of the week N days ahead or back, and the date N days after a given date."""
    return generate("date_arithmetic", split, num_examples, seed, _make_date_arithmetic)


# ---------------------------------------------------------------------------- clock (held out)


def format_time(minutes: int) -> str:
    """Minutes since midnight (any integer) as a 24-hour ``'HH:MM'``."""
    hours, mins = divmod(minutes % (24 * 60), 60)
    return f"{hours:02d}:{mins:02d}"


def _clock_rationale(start: int, hours: int, mins: int) -> str:
    hour, minute = divmod(start, 60)
    sentences = []
    after_hours = hour + hours
    if after_hours >= 24:
        sentences.append(
            f"Adding {plural(hours, 'hour')} to {format_time(start)}: {hour} + {hours} = "
            f"{after_hours}, which passes midnight, and {after_hours} - 24 = {after_hours - 24}, "
            f"so it is {format_time(start + 60 * hours)}."
        )
    else:
        sentences.append(
            f"Adding {plural(hours, 'hour')} to {format_time(start)}: {hour} + {hours} = "
            f"{after_hours}, so it is {format_time(start + 60 * hours)}."
        )
    if mins:
        total = minute + mins
        if total >= 60:
            sentences.append(
                f"Adding {mins} minutes: {minute} + {mins} = {total}, which is one hour and "
                f"{total - 60} minutes, so the time is {format_time(start + 60 * hours + mins)}."
            )
        else:
            sentences.append(
                f"Adding {mins} minutes: {minute} + {mins} = {total}, so the time is "
                f"{format_time(start + 60 * hours + mins)}."
            )
    return " ".join(sentences)


def _make_clock(rng: random.Random) -> Example:
    start = rng.randrange(24 * 12) * 5
    hours = rng.randint(1, 12)
    mins = rng.randrange(12) * 5
    later = f"{plural(hours, 'hour')} and {mins} minutes" if mins else plural(hours, "hour")
    end = start + 60 * hours + mins
    answer = format_time(end)
    no_carry = start + 60 * hours + mins - (60 if (start % 60) + mins >= 60 else 0)
    distractors = [format_time(t) for t in (end + 60, end - 60, no_carry, end + 12 * 60)]
    return {
        "question": f"It is {format_time(start)} now. What time will it be in {later}?",
        "answer": answer,
        "options": with_options(rng, answer, distractors, 4),
        "rationale": _clock_rationale(start, hours, mins),
    }


def clock(split: str, num_examples: int, seed: int) -> Iterator[Example]:
    """Add hours and minutes to a 24-hour clock time, wrapping past midnight (held out)."""
    return generate("clock", split, num_examples, seed, _make_clock)
