"""tinyllm: the supporting package of the tinyllm course.

Each module owns one step of the flow text -> tokenizer -> batches -> model -> loss ->
optimizer -> checkpoint -> generate / inspect. A chapter builds its piece from scratch,
checks it against the module here, and later chapters import the module.
"""

__version__ = "0.1.0"
