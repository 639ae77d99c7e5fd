"""Pipeline deployments: environments of the CDK app, and synth/diff/deploy/destroy runs from the admin."""
