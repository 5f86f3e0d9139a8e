"""Grading the course's exercises with otter-grader, locally.

- ``assignments/NN_name.json`` hold every set's tests, as package data, so grading works
  from an installed package and in Colab; the repository's ``teaching/build.py`` writes
  them from the instructor sources (otter's assign format). :mod:`tinyllm.grading.assign`
  reads the tests of a teacher's own source instead (``--sources``).
- :mod:`tinyllm.grading.judge` is the grader's own process (phase 2): it imports all it
  needs, starts the notebook in the sandbox and runs the set's tests, calling the
  learner's functions there through a channel.
- :mod:`tinyllm.grading.sandbox` is where learner code runs: bubblewrap (read-only
  filesystem, private folders, no network, its own pid namespace, limits), or, without it,
  a process forked from the grader's own, with the limits alone (own work only).
  :mod:`tinyllm.grading.warm` forks the notebook's process into that sandbox from one warm
  process that imported torch once.
- :mod:`tinyllm.grading.serve` runs inside it (phase 1): the notebook's cells, each with a
  time limit so one broken cell costs only its own question, then the learner's functions
  on the inputs the tests send; :mod:`tinyllm.grading.watch` notes, while one runs, the
  package's own functions it enters, other libraries' versions of a piece it runs
  (:mod:`tinyllm.grading.libraries`) and the functions its question forbids.
- :mod:`tinyllm.grading.values` turns values into plain data and carries them between the
  two, checking what comes out of the sandbox.
- :mod:`tinyllm.grading.checks` holds the small helpers the exercises' tests call, so that a
  failing test says in one sentence what went wrong.
- :mod:`tinyllm.grading.flags` reads the hand-in before it runs (can it be graded?) and flags
  answers that import the package's own implementation;
  :mod:`tinyllm.grading.results` is the report.
- ``public_tests.json`` (generated) carries the public tests for Colab, where the notebook
  file is not on disk for otter to read them from.

The command line is ``python -m tinyllm.grade`` (see :mod:`tinyllm.grade`).
"""

# The first lines of the cells a graded run leaves out (teaching/course.py writes them).
GRADING_CELL_FIRST_LINE = "# Grade this notebook against the hidden tests"
SETUP_CELL_FIRST_LINE = "# Colab setup"
GRADING_ENV = "TINYLLM_GRADING"  # set inside a graded run: the grading cell does nothing there
