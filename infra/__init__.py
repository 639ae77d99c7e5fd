"""The metering pipeline's AWS CDK app (see infra/README.md); importable without aws_cdk."""
