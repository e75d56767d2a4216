"""Reading results, never running a model: bootstrap intervals and paired tests (stats), the result
cells and their labels (cells), tables and plots (tables), paired comparisons (compare), retrieval grids
(grids), the HTML page (html) and the report that renders them all (report).

May import: cirbench.errors, cirbench.util, cirbench.protocol, cirbench.contracts, cirbench.storage.
"""
