"""The repository's own tooling for the course: not part of the installed package.

It reads the repository (``_config.yml``, ``exercises/``), so it lives beside ``tinyllm/``
and is left out of the wheel (pyproject's package discovery takes ``tinyllm*`` only).
Scripts, tests and the book import it from the repository root.

- :mod:`teaching.course`: the Colab setup cell of every notebook and absolute links between
  pages, from ``_config.yml``;
- :mod:`teaching.build`: from instructor sources to learner notebooks, the package's test
  data, autograder archives, and the wrong and cheating submissions
  (``python exercises/build.py``).
"""
