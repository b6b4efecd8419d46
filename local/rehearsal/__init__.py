"""The rehearsal of a deployment (``make rehearse``): the template proven against the code without AWS.

- ``translate``: the SAM template as plain CloudFormation, by the SAM translator itself (offline).
- ``evaluate``: that CloudFormation's intrinsics evaluated for one set of parameter values (a scenario).
- ``needs``: what each function's code reads (secrets, buses, queues), derived from its settings classes.
- ``checks``: the static checks: grants, event targets, network reachability, log groups.
- ``moto_deploy``: the IAM-relevant part of the stack created in moto, and each function's cold-start path
  run under its own role with IAM enforced.
"""
