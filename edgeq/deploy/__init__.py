"""Deploy kits: in each target's folder, what a device needs to run its artifacts (edgeq.deploy.kit)."""
