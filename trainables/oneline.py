"""The project's command lines share this parser: bad input is one line on stderr and exit 2."""

from __future__ import annotations

import argparse
import typing


class UsageError(Exception):
    """Bad command-line input; every CLI of the project prints it as one line and exits 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but an error is a UsageError (one line), not usage text plus a message."""

    def error(self, message: str) -> typing.NoReturn:
        raise UsageError(f"{message} (see --help)")
