"""`pareto demo`: the whole loop on simulated models, offline, in about a minute.

The demo starts simulated models (`proxy.simulator`) and a gateway process serving
`config/demo.yaml`, sends a small online shop's support conversations through it with the
official `openai` client, samples them as cases, annotates the cases with the dataset's
criteria, evaluates every candidate with deterministic checks, applies the decision, and
sends the traffic again to show the new route serving it. Then it prints the candidate table,
the decision, spend before and after, and writes the Pareto report.
"""
