"""The Volcengine CloudIdentity API: V4 signing and the provisioning-events client."""
