"""Grading the course's exercises with otter-grader, locally and without Docker.

- :mod:`tinyllm.grading.build` turns an instructor source (otter's assign format) into the
  learner notebook and the autograder archive, and every set's tests into package data
  (``assignments/NN_name.json``), so grading works from an installed package and in Colab.
- :mod:`tinyllm.grading.sandbox` runs a graded notebook in a child process with time,
  memory, disk and process limits and a watchdog that stops it, so no notebook can take
  the grading machine down.
- :mod:`tinyllm.grading.runner` is that child: it runs the notebook with nbclient, then
  records each question's calls of the learner's functions.
- :mod:`tinyllm.grading.record` records those calls in the notebook's kernel and replays
  them in the grader's own process, where the tests' verdicts are made: whatever a
  notebook does to its own process, it cannot change how it is judged.
- :mod:`tinyllm.grading.guard` runs inside the graded notebook's kernel: a time limit per cell
  and a cap on printed output, so one broken cell costs only its own question.
- :mod:`tinyllm.grading.checks` holds the small helpers the exercises' tests call, so that a
  failing test says in one sentence what went wrong.
- :mod:`tinyllm.grading.public_tests` (generated) carries the public tests for Colab, where
  the notebook file is not on disk for otter to read them from.

The command line is ``python -m tinyllm.grade`` (see :mod:`tinyllm.grade`).
"""
