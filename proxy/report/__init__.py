"""The policy report: one self-contained HTML page with the cost/quality chart of a policy.

`data` reads what the page shows from the database into plain dataclasses, and `page` renders
them as HTML with inline SVG charts (`scatter`, `spend_chart`). The same page is written by
`pareto report` and served live by the gateway at `/ui`.
"""
