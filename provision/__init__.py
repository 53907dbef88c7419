"""pyinfra provisioning of a mipo appliance: the deploy entry, one module per component, templates."""
