"""What every `python -m hrnet_jax.*` entry point shares.

- absl flags, defined at module level in thin command-line modules that no library code imports;
- `--config=FILE[:ARG]` with `--config.KEY=VALUE` overrides, checked before anything runs
  (`ConfigFlag`), the result read-only;
- quiet library logs (`--verbosity=1` brings them back);
- a user's mistake (`errors.UserError`, a missing file, a bad flag) as one `error: ...` line on
  stderr and a non-zero exit, with no traceback; a bug keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import ml_collections
from absl import app, flags

from hrnet_jax import config_lib, errors, logs


def fail(message: str, code: int = 1):
    """Prints `error: message` and exits with `code`."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


class ConfigFlag:
    """`--config=FILE[:ARG]` and its `--config.KEY=VALUE` overrides; `value` is the checked config."""

    def __init__(
        self,
        name: str = "config",
        help_string: str = "Config file (get_config()).",
        required: bool = True,
    ):
        self.name = name
        self.required = required
        self._file = flags.DEFINE_string(
            name, None, f"{help_string} Fields are overridden with --{name}.KEY=VALUE."
        )
        self.overrides: list[str] = []
        self._value: ml_collections.FrozenConfigDict | None = None

    def take_overrides(self, argv: Sequence[str]) -> list[str]:
        """argv without the `--config.KEY=VALUE` arguments, which this flag keeps."""
        prefix = f"--{self.name}."
        self.overrides = [a for a in argv[1:] if a.startswith(prefix)]
        return [a for i, a in enumerate(argv) if i == 0 or not a.startswith(prefix)]

    @property
    def given(self) -> bool:
        return self._file.value is not None

    @property
    def value(self) -> ml_collections.FrozenConfigDict:
        if self._value is None:
            if not self.given:
                raise errors.ConfigError(f"--{self.name}=FILE is required")
            config = config_lib.load_config(self._file.value, overrides=self._pairs())
            self._value = config_lib.check(config)
        return self._value

    def _pairs(self) -> list[tuple[str, str | None]]:
        pairs = []
        for arg in self.overrides:
            key, sep, value = arg[len(self.name) + 3 :].partition("=")
            pairs.append((key, value if sep else None))
        return pairs


def run(
    main: Callable[[], None], *, config: ConfigFlag | None = None, required: Sequence[str] = ()
) -> None:
    """Parses the flags and runs `main()` with the shared logging and error handling."""

    def parse(argv: list[str]) -> list[str]:
        rest = config.take_overrides(argv) if config is not None else argv
        try:
            args = flags.FLAGS(rest)
        except flags.Error as e:
            fail(str(e), 2)
        if len(args) > 1:
            fail(f"unexpected arguments: {' '.join(args[1:])}", 2)
        missing = [f"--{n}" for n in required if flags.FLAGS[n].value in (None, "", [])]
        if config is not None and config.required and not config.given:
            missing.insert(0, f"--{config.name}")
        if missing:
            fail(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required", 2)
        return args

    def guarded(argv: list[str]) -> None:
        del argv
        logs.quiet_libraries(flags.FLAGS.verbosity)
        try:
            main()
        except errors.USER_ERRORS as e:
            fail(_message(e))
        except KeyboardInterrupt:
            fail("interrupted", 130)

    app.run(guarded, flags_parser=parse)


def _message(error: BaseException) -> str:
    if isinstance(error, OSError) and error.filename and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return str(error)
