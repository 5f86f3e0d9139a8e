"""What grading found: per question its points, verdicts, first failing message and flags."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class QuestionResult:
    name: str
    score: float
    possible: float
    public_passed: bool
    hidden_passed: bool
    message: str = ""  # the first failing test's message, empty when all passed
    cases: list[dict] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)  # e.g. the answer imports tinyllm.model

    @property
    def passed(self) -> bool:
        return self.public_passed and self.hidden_passed


@dataclass
class Report:
    notebook: str
    assignment: str | None
    questions: list[QuestionResult]
    error: str | None = None  # set when the notebook could not be graded (all of it or the rest)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # cells that hit a limit of the grader

    @property
    def score(self) -> float:
        return sum(q.score for q in self.questions)

    @property
    def possible(self) -> float:
        return sum(q.possible for q in self.questions)

    def question(self, name: str) -> QuestionResult:
        return next(q for q in self.questions if q.name == name)

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(score=self.score, possible=self.possible)
        return data

    def table(self) -> str:
        """A per-question table: question, points, passed/failed, first failing message."""
        rows = [("question", "points", "result", "first failing message")]
        for q in self.questions:
            if not q.cases:
                result = "not graded"
            elif q.passed:
                result = "passed"
            else:
                result = "failed (public)" if not q.public_passed else "failed (hidden)"
            if q.flags:
                result += ", flagged"
            rows.append((q.name, f"{q.score:g} / {q.possible:g}", result, q.message))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = [f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip() for r in rows]
        lines.insert(1, "-" * max(len(line) for line in lines))
        lines.append(f"total: {self.score:g} / {self.possible:g}")
        for q in self.questions:
            for flag in q.flags:
                lines.append(f"flagged {q.name}: {flag}")
        if self.error:
            lines.append(f"note: {self.error}")
        for note in self.notes:
            lines.append(f"note: {note}")
        return "\n".join(lines)


def first_line_of_failure(message: str) -> str:
    """The learner-facing sentence of an otter failure message (not the test's code)."""
    lines = [line for line in message.splitlines() if line.strip()]
    # Otter's message: "❌ Test case failed", "Error at line N in test q1:", the test's
    # line of code (indented), then "ExceptionType: what went wrong".
    for line in reversed(lines):
        if not line.startswith(" "):
            text = line.strip()
            return text.removeprefix("AssertionError: ")
    return message.strip()
