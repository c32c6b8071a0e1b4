"""hcm-soc: the security monitoring platform of Ho Chi Minh City's Information Security Center."""

__version__ = "0.1.0"
