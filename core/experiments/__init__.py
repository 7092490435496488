"""The experiment suite: suites of fixed cases, the metrics that judge a model on them,
experiment records in the store, the PR gate that compares two experiments, and the
HTML report. Pure: no Ray, no HTTP (the CLI runs the cases through the cluster's API).
"""
