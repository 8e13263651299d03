output "resource_group" {
  value = azurerm_resource_group.this.name
}

output "twin_api_url" {
  description = "Public URL of the twin API."
  value       = "https://${azurerm_container_app.twin_api.ingress[0].fqdn}"
}

output "eventhub_namespace" {
  value = "${azurerm_eventhub_namespace.this.name}.servicebus.windows.net"
}

output "eventhub_name" {
  value = azurerm_eventhub.telemetry.name
}

output "collector_eventhub_secret_id" {
  description = "Key Vault secret holding the collectors' send-only connection string."
  value       = azurerm_key_vault_secret.collector_eventhub.versionless_id
}

output "lakehouse_url" {
  value = "abfss://${azurerm_storage_data_lake_gen2_filesystem.lakehouse.name}@${azurerm_storage_account.lake.name}.dfs.core.windows.net/"
}

output "key_vault_uri" {
  value = azurerm_key_vault.this.vault_uri
}

output "state_share" {
  description = "Azure Files share mounted at the cloud's stateDir (SQLite state): <account>/<share>."
  value       = "${azurerm_storage_account.state.name}/${azurerm_storage_share.state.name}"
}

output "state_dir" {
  description = "Path of the state directory inside the twin API container (where the share is mounted)."
  value       = local.state_dir
}

output "audit_container_url" {
  description = "The immutable audit container (7-year retention); `edgetwin cloud audit verify --dir` checks a downloaded copy."
  value       = "${azurerm_storage_account.audit.primary_blob_endpoint}${azurerm_storage_container.audit.name}"
}

output "alert_action_group_id" {
  value = azurerm_monitor_action_group.ops.id
}

output "store_host" {
  description = "PostgreSQL Flexible Server host (store_kind = postgres; private DNS inside the VNet), null with SQLite."
  value       = local.pg ? azurerm_postgresql_flexible_server.this[0].fqdn : null
}

output "store_password_secret_id" {
  description = "Key Vault secret holding the store password (store_kind = postgres)."
  value       = local.pg ? azurerm_key_vault_secret.store_password[0].versionless_id : null
}

output "setup_db_command" {
  description = "Run after an apply that changes the image (store_kind = postgres): migrations and the app role's grants, as the server admin."
  value       = local.pg ? "az containerapp job start --name ${azurerm_container_app_job.setup_db[0].name} --resource-group ${azurerm_resource_group.this.name}" : null
}
