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
