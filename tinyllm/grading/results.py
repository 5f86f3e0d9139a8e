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
    judge_peak_bytes: int = 0  # the grader's own process (phase 2): its peak resident memory
    seed: int | None = None  # the hidden tests' inputs: TINYLLM_GRADING_SEED=<seed> draws them again

    @classmethod
    def from_dict(cls, data: dict) -> Report:
        questions = [QuestionResult(**q) for q in data["questions"]]
        keep = {k: data[k] for k in ("error", "seconds", "notes", "judge_peak_bytes", "seed") if k in data}
        return cls(data["notebook"], data["assignment"], questions, **keep)

    @property
    def score(self) -> float:
        return sum(q.score for q in self.questions)

    @property
    def possible(self) -> float:
        return sum(q.possible for q in self.questions)

    def question(self, name: str) -> QuestionResult:
        for q in self.questions:
            if q.name == name:
                return q
        raise KeyError(f"no question {name!r} in this report (it has {', '.join(q.name for q in self.questions)})")

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(score=self.score, possible=self.possible)
        return data

    def table(self) -> str:
        """The grader's table, framed, its total the last line (the JSON report is the record).

        Every text that came from the notebook (messages, notes) is one line here, so nothing
        a notebook prints or raises can pass for the grader's own lines.
        """
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
            rows.append((q.name, f"{q.score:g} / {q.possible:g}", result, one_line(q.message)))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = [f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip() for r in rows]
        rule = "-" * max(len(line) for line in lines)
        lines.insert(1, rule)
        for q in self.questions:
            for flag in q.flags:
                lines.append(f"flagged {q.name}: {one_line(flag)}")
        if self.error:
            lines.append(f"note: {one_line(self.error)}")
        for note in self.notes:
            lines.append(f"note: {one_line(note)}")
        banner = f"== tinyllm.grade: {self.assignment or 'no exercise set'} (the JSON report is the record) =="
        return "\n".join([banner, *lines, rule, f"total: {self.score:g} / {self.possible:g}"])


def one_line(text: str, limit: int = 300) -> str:
    """``text`` as one line of printable characters, cut at ``limit``."""
    flat = " ".join("".join(ch if ch.isprintable() else " " for ch in str(text)).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


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
