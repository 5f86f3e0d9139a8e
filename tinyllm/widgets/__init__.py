"""Interactive explorers for Jupyter and Colab (ipywidgets). They only read models and
tokenizers; each has a static rendering for the book."""
