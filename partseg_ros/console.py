"""Entry points of every console command, with one rule for user mistakes.

A missing file, a malformed option or an unknown name is the user's mistake,
not the program's: the command answers it with one line on stderr,
``<command>: <what is wrong>``, and exit code 2 (the shell convention for
usage errors, and argparse's), never a traceback. Real failures keep their
traceback. The pip console scripts (setup.py) and the colcon ones
(scripts/) both call :func:`run` through the functions below, so each
command's ``main`` stays as it is and the rule lives in one place.

Commands raise :class:`UsageError` for mistakes they detect themselves;
``FileNotFoundError``/``NotADirectoryError``/``IsADirectoryError``/``FileExistsError`` and
``argparse.ArgumentTypeError`` are treated as usage errors wherever they come
from, since they always name a path or an argument the user gave.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

USAGE_ERROR_EXIT = 2
# Exceptions that always describe what the user passed (a path or an argument's text).
USAGE_EXCEPTIONS: tuple[type[BaseException], ...] = (
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    FileExistsError,
    argparse.ArgumentTypeError,
)


class UsageError(Exception):
    """A user mistake on the command line; the console commands print it as one line and exit with 2."""


@dataclass(frozen=True)
class Command:
    """Where a console command's ``main`` lives and how it takes its arguments."""

    target: str  # "package.module:function"
    # ROS nodes read the whole sys.argv (program name first) so rclpy sees --ros-args.
    argv_with_program: bool = False
    check: Optional[Callable[[Sequence[str]], None]] = None  # usage checks before main runs


def _node_params_files(argv: Sequence[str]) -> None:
    """rcl aborts with a C-level traceback on a missing --params-file: say it in one line first."""
    for flag, value in zip(argv, list(argv[1:]) + [""]):
        if flag == "--params-file":
            if not value:
                raise UsageError("--params-file needs a file name")
            if not Path(value).is_file():
                raise UsageError(f"parameters file {value} not found")


COMMANDS: dict[str, Command] = {
    "partseg_node": Command("partseg_ros.ros.node:main", argv_with_program=True, check=_node_params_files),
    "partseg_bringup": Command("partseg_ros.ros.bringup:main"),
    "partseg_replay": Command("partseg_ros.ros.replay:main"),
    "partseg_generate_benchmark": Command("partseg_ros.scene.generate:main"),
    "partseg_convert_instructpart": Command("partseg_ros.bags.instructpart_converter:main"),
    # The evaluator's command with its live path plugged in (the evaluator itself imports no ROS).
    "partseg_evaluate": Command("partseg_ros.ros.live_evaluation:main"),
    "partseg_generate_training_crops": Command("partseg_ros.backends.pisa_rgbd.dataset:main"),
    "partseg_train_part_grounder": Command("partseg_ros.backends.pisa_rgbd.train:main"),
    "partseg_validate_generalisation": Command("partseg_ros.evaluation.generalisation:main"),
}


@contextlib.contextmanager
def one_line_argparse_errors() -> Iterator[None]:
    """While a command parses its arguments, argparse reports a bad one in one line.

    argparse prints the whole usage block before the error; the usage is one
    ``--help`` away, and a wrapper script or a launch log wants one line.
    The change is undone when the command returns.
    """
    original = argparse.ArgumentParser.error

    def error(parser: argparse.ArgumentParser, message: str) -> None:
        parser.exit(USAGE_ERROR_EXIT, f"{parser.prog}: error: {message} (see --help)\n")

    argparse.ArgumentParser.error = error  # type: ignore[method-assign]
    try:
        yield
    finally:
        argparse.ArgumentParser.error = original  # type: ignore[method-assign]


def _load(target: str) -> Callable[..., Optional[int]]:
    module_name, function = target.split(":")
    return getattr(importlib.import_module(module_name), function)


def run(prog: str, argv: Optional[Sequence[str]] = None) -> int:
    """Run console command ``prog`` with ``argv`` (default: ``sys.argv[1:]``); returns its exit code."""
    command = COMMANDS[prog]
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if command.check is not None:
            command.check(args)
        main = _load(command.target)
        with one_line_argparse_errors():
            if command.argv_with_program:
                code = main(None if argv is None else [prog, *args])
            else:
                code = main(args)
    except (UsageError, *USAGE_EXCEPTIONS) as exc:
        print(f"{prog}: {_one_line(exc)}", file=sys.stderr)
        return USAGE_ERROR_EXIT
    except SystemExit as exc:  # argparse (usage errors, --help) and commands that exit themselves
        if exc.code is None or isinstance(exc.code, int):
            return int(exc.code or 0)
        print(exc.code, file=sys.stderr)
        return 1
    return int(code or 0)


def _one_line(exc: BaseException) -> str:
    """The exception's message on one line (OSError without a message names its file)."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


# One function per console command (setup.py's console_scripts and scripts/ call these).


def partseg_node() -> int:
    return run("partseg_node")


def partseg_bringup() -> int:
    return run("partseg_bringup")


def partseg_replay() -> int:
    return run("partseg_replay")


def partseg_generate_benchmark() -> int:
    return run("partseg_generate_benchmark")


def partseg_convert_instructpart() -> int:
    return run("partseg_convert_instructpart")


def partseg_evaluate() -> int:
    return run("partseg_evaluate")


def partseg_generate_training_crops() -> int:
    return run("partseg_generate_training_crops")


def partseg_train_part_grounder() -> int:
    return run("partseg_train_part_grounder")


def partseg_validate_generalisation() -> int:
    return run("partseg_validate_generalisation")
