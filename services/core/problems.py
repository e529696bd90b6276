"""What an upload (a CSV of manual items, a schedule) found wrong, line by line:
a file is taken whole or refused whole with this list."""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_PROBLEMS = 50  # listed per upload; the rest are counted


@dataclass
class Problems:
    problems: list[str] = field(default_factory=list)
    more_problems: int = 0

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)
        else:
            self.more_problems += 1

    def summary(self) -> str:
        more = f" (and {self.more_problems} more)" if self.more_problems else ""
        return f"{len(self.problems)} problem(s){more}; nothing stored"
