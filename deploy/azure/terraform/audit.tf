# --- Audit trail that lasts: an immutable Blob container (issue 17) ----------------------------
# The cloud exports every audit entry into hash-chained JSON-lines segments (cloud/audit/export.ts)
# and uploads each sealed segment here with If-None-Match: * (never overwritten). A time-based
# retention policy keeps every blob undeletable and unchangeable for audit_retention_days (7 years)
# from its creation — by anyone, the cloud's identity and subscription owners included, once the
# policy is locked. An account of its own: no hierarchical namespace, no shared key, its own
# lifecycle, nothing else in it whose deletion the policy would block.
resource "azurerm_storage_account" "audit" {
  name                            = substr("st${local.prefix}audit", 0, 24)
  location                        = azurerm_resource_group.this.location
  resource_group_name             = azurerm_resource_group.this.name
  account_tier                    = "Standard"
  account_kind                    = "StorageV2"
  account_replication_type        = var.audit_replication
  min_tls_version                 = "TLS1_2"
  https_traffic_only_enabled      = true
  allow_nested_items_to_be_public = false
  shared_access_key_enabled       = false
  public_network_access_enabled   = !var.enable_private_endpoints
  tags                            = local.tags
}

resource "azurerm_storage_container" "audit" {
  name                  = "audit"
  storage_account_id    = azurerm_storage_account.audit.id
  container_access_type = "private"
}

resource "azurerm_storage_container_immutability_policy" "audit" {
  storage_container_resource_manager_id = azurerm_storage_container.audit.id
  immutability_period_in_days           = var.audit_retention_days
  # Segments are whole block blobs written once: no appends to allow.
  protected_append_writes_enabled     = false
  protected_append_writes_all_enabled = false
  # Locked: the period can only be extended, and the policy never removed (SEC 17a-4(f)-style WORM).
  # A throwaway environment sets audit_immutability_locked = false; a locked container with blobs
  # in it cannot be deleted until its newest blob is 7 years old.
  locked = var.audit_immutability_locked
}

resource "azurerm_role_assignment" "cloud_audit" {
  scope                = azurerm_storage_container.audit.id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = azurerm_user_assigned_identity.cloud.principal_id
}
