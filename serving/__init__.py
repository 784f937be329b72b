"""Ray Serve deployments (embedding, VQA, planner), HTTP schemas and the robot-side client.

Imports `modeling` and `ray.serve`; never Prefect.
"""
