"""How far a moment is from now, in the words the pages, the admin and the command-line client
share ("in 12 min", "5 min ago"). Plain Python, importable without Django, for the client."""


def duration_words(seconds: float) -> str:
    """About how long: "40 s", "12 min", "2 h 5 min"."""
    if seconds < 60:
        return f"{max(round(seconds), 0)} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def time_until(seconds: float) -> str:
    """When something `seconds` from now should happen; a moment already passed is due now."""
    return "any moment now" if seconds < 1 else f"in {duration_words(seconds)}"


def time_since(seconds: float) -> str:
    return f"{duration_words(seconds)} ago"
