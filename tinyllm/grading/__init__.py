"""Grading the course's exercises with otter-grader, locally and without Docker.

- :mod:`tinyllm.grading.build` turns an instructor source (otter's assign format) into the
  learner notebook and the autograder archive, cached under ``_build/grading``.
- :mod:`tinyllm.grading.runner` grades one notebook with ``otter run`` in a separate process
  that :mod:`tinyllm.grade` can kill, so a submission can never hang the command.
- :mod:`tinyllm.grading.guard` runs inside the graded notebook's kernel: a time limit per cell
  and a cap on printed output, so one broken cell costs only its own question.
- :mod:`tinyllm.grading.checks` holds the small helpers the exercises' tests call, so that a
  failing test says in one sentence what went wrong.
- :mod:`tinyllm.grading.public_tests` (generated) carries the public tests for Colab, where
  the notebook file is not on disk for otter to read them from.

The command line is ``python -m tinyllm.grade`` (see :mod:`tinyllm.grade`).
"""
