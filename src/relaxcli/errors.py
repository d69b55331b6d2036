"""Error types the CLI maps to exit codes: :class:`BadInput` -> exit 2 (one clear line)."""


class BadInput(ValueError):
    """The user's input is wrong (unknown method, bad number, unusable --out ...).

    Raised before a run starts; the CLI prints ``error: <message>`` and exits with code 2.
    """
