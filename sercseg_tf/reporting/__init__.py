"""Report building blocks: run layout, tables, figures and the HTML page (no TensorFlow)."""
