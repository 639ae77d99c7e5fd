"""Small helpers for the sentences the portal writes around names it does not control (its own, its tenants')."""

SENTENCE_ENDS = (".", "!", "?", "…")


def end_sentence(text: str) -> str:
    """`text` ended with a full stop, unless it ends with one already ("Example SaaS Inc." stays as it is)."""
    text = str(text).rstrip()
    return text if text.endswith(SENTENCE_ENDS) else f"{text}."
