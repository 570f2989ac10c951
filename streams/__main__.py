"""``python -m streams``: the Faust command line (worker and our commands)."""

from __future__ import annotations


def main() -> None:
    from streams import commands  # noqa: F401  (registers the commands)
    from streams.app import app

    app.main()


if __name__ == "__main__":
    main()
