data "azurerm_client_config" "current" {}

locals {
  prefix = "edgetwin${var.name}"
  tags   = merge({ app = "edgetwin" }, var.tags)
  # The cloud's stateDir (twins.db: twins, desired state, tokens, audit, identities; model files):
  # the Azure Files share is mounted here and EDGETWIN_CLOUD_STATE_DIR names the same path.
  state_dir = "/var/lib/edgetwin/cloud"
  # The lakehouse working copy is restored from the ADLS copy at start, so by default it stays on
  # the replica's ephemeral disk (fast local I/O for DuckDB); lakehouse_on_share trades that for
  # capacity beyond the ephemeral budget and no restore download after a replacement.
  lakehouse_root = var.lakehouse_on_share ? "${local.state_dir}/lakehouse" : "/var/lib/edgetwin/lakehouse"
}

resource "azurerm_resource_group" "this" {
  name     = "rg-${local.prefix}"
  location = var.location
  tags     = local.tags
}

# --- Observability -----------------------------------------------------------------------------
resource "azurerm_log_analytics_workspace" "this" {
  name                = "log-${local.prefix}"
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  sku                 = "PerGB2018"
  retention_in_days   = var.log_retention_days
  tags                = local.tags
}

# --- Event Hubs: sites -> cloud, scaled by partitions ---------------------------------------------
resource "azurerm_eventhub_namespace" "this" {
  name                          = "evhns-${local.prefix}"
  location                      = azurerm_resource_group.this.location
  resource_group_name           = azurerm_resource_group.this.name
  sku                           = var.eventhub_sku
  capacity                      = var.eventhub_capacity
  local_authentication_enabled  = true # collectors use SAS connection strings kept in Key Vault
  public_network_access_enabled = !var.enable_private_endpoints
  minimum_tls_version           = "1.2"
  tags                          = local.tags
}

resource "azurerm_eventhub" "telemetry" {
  name              = "telemetry"
  namespace_id      = azurerm_eventhub_namespace.this.id
  partition_count   = var.eventhub_partitions
  message_retention = var.eventhub_retention_days
}

resource "azurerm_eventhub_consumer_group" "cloud" {
  name                = "edgetwin-cloud"
  namespace_name      = azurerm_eventhub_namespace.this.name
  eventhub_name       = azurerm_eventhub.telemetry.name
  resource_group_name = azurerm_resource_group.this.name
}

# Send-only rule for site collectors; the cloud reads with its managed identity instead.
resource "azurerm_eventhub_authorization_rule" "collectors" {
  name                = "collectors-send"
  namespace_name      = azurerm_eventhub_namespace.this.name
  eventhub_name       = azurerm_eventhub.telemetry.name
  resource_group_name = azurerm_resource_group.this.name
  listen              = false
  send                = true
  manage              = false
}

# --- Storage: ADLS Gen2 lakehouse + consumer checkpoints ------------------------------------------
resource "azurerm_storage_account" "lake" {
  name                            = substr(replace("st${local.prefix}", "-", ""), 0, 24)
  location                        = azurerm_resource_group.this.location
  resource_group_name             = azurerm_resource_group.this.name
  account_tier                    = "Standard"
  account_replication_type        = var.lake_replication # GZRS/RAGZRS: a copy in the paired region too
  account_kind                    = "StorageV2"
  is_hns_enabled                  = true # ADLS Gen2: Spark/Databricks read the Parquet layout directly
  min_tls_version                 = "TLS1_2"
  allow_nested_items_to_be_public = false
  shared_access_key_enabled       = false
  public_network_access_enabled   = !var.enable_private_endpoints
  tags                            = local.tags

  blob_properties {
    delete_retention_policy {
      days = 14
    }
    container_delete_retention_policy {
      days = 14
    }
  }
}

resource "azurerm_storage_data_lake_gen2_filesystem" "lakehouse" {
  name               = "lakehouse"
  storage_account_id = azurerm_storage_account.lake.id
}

resource "azurerm_storage_container" "checkpoints" {
  name                  = "eventhub-checkpoints"
  storage_account_id    = azurerm_storage_account.lake.id
  container_access_type = "private"
}

# --- Azure Files: the cloud's SQLite state ------------------------------------------------------
# A premium FileStorage account of its own rather than a share in the lake account: Container Apps
# mounts SMB shares with the account key, which the lake account disables (identity only), and
# SQLite syncs every commit (synchronous=FULL, rollback journal): several small round trips per
# ingest, so latency per I/O is what counts, and premium (SSD, provisioned IOPS) has lower and
# steadier latency than a transaction-billed standard share.
resource "azurerm_storage_account" "state" {
  name                            = substr("st${local.prefix}fs", 0, 24)
  location                        = azurerm_resource_group.this.location
  resource_group_name             = azurerm_resource_group.this.name
  account_tier                    = "Premium"
  account_kind                    = "FileStorage"
  account_replication_type        = var.state_share_replication
  min_tls_version                 = "TLS1_2"
  https_traffic_only_enabled      = true
  allow_nested_items_to_be_public = false
  shared_access_key_enabled       = true # the Container Apps SMB mount authenticates with the key
  public_network_access_enabled   = !var.enable_private_endpoints
  tags                            = local.tags

  share_properties {
    retention_policy {
      days = 14 # a deleted share can be undeleted for two weeks
    }
  }
}

resource "azurerm_storage_share" "state" {
  name               = "cloud-state"
  storage_account_id = azurerm_storage_account.state.id
  quota              = var.state_share_quota_gb
  enabled_protocol   = "SMB"
}

resource "azurerm_container_app_environment_storage" "state" {
  name                         = "cloud-state"
  container_app_environment_id = azurerm_container_app_environment.this.id
  account_name                 = azurerm_storage_account.state.name
  share_name                   = azurerm_storage_share.state.name
  access_key                   = azurerm_storage_account.state.primary_access_key
  access_mode                  = "ReadWrite"
}

# --- Key Vault: secrets the containers read through their identity -------------------------------
resource "azurerm_key_vault" "this" {
  name                          = substr("kv-${local.prefix}", 0, 24)
  location                      = azurerm_resource_group.this.location
  resource_group_name           = azurerm_resource_group.this.name
  tenant_id                     = data.azurerm_client_config.current.tenant_id
  sku_name                      = "standard"
  rbac_authorization_enabled    = true
  purge_protection_enabled      = true
  soft_delete_retention_days    = 30
  public_network_access_enabled = !var.enable_private_endpoints
  tags                          = local.tags
}

resource "azurerm_role_assignment" "deployer_kv_admin" {
  scope                = azurerm_key_vault.this.id
  role_definition_name = "Key Vault Secrets Officer"
  principal_id         = data.azurerm_client_config.current.object_id
}

resource "azurerm_key_vault_secret" "collector_eventhub" {
  name         = "collector-eventhub-connection-string"
  value        = azurerm_eventhub_authorization_rule.collectors.primary_connection_string
  key_vault_id = azurerm_key_vault.this.id
  depends_on   = [azurerm_role_assignment.deployer_kv_admin]
}

# --- Container Apps: the twin API and the Event Hubs consumer ---------------------------------------
resource "azurerm_container_app_environment" "this" {
  name                       = "cae-${local.prefix}"
  location                   = azurerm_resource_group.this.location
  resource_group_name        = azurerm_resource_group.this.name
  log_analytics_workspace_id = azurerm_log_analytics_workspace.this.id
  # With PostgreSQL the apps join its VNet (the server has private access only).
  infrastructure_subnet_id = local.pg ? azurerm_subnet.apps[0].id : null
  tags                     = local.tags
}

resource "azurerm_user_assigned_identity" "cloud" {
  name                = "id-${local.prefix}-cloud"
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  tags                = local.tags
}

resource "azurerm_role_assignment" "cloud_eventhub_receive" {
  scope                = azurerm_eventhub.telemetry.id
  role_definition_name = "Azure Event Hubs Data Receiver"
  principal_id         = azurerm_user_assigned_identity.cloud.principal_id
}

resource "azurerm_role_assignment" "cloud_storage" {
  scope                = azurerm_storage_account.lake.id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = azurerm_user_assigned_identity.cloud.principal_id
}

resource "azurerm_role_assignment" "cloud_kv" {
  scope                = azurerm_key_vault.this.id
  role_definition_name = "Key Vault Secrets User"
  principal_id         = azurerm_user_assigned_identity.cloud.principal_id
}

resource "azurerm_container_app" "twin_api" {
  name                         = "ca-${local.prefix}-api"
  container_app_environment_id = azurerm_container_app_environment.this.id
  resource_group_name          = azurerm_resource_group.this.name
  revision_mode                = "Single"
  tags                         = local.tags

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.cloud.id]
  }

  ingress {
    external_enabled = true
    target_port      = 8480
    transport        = "http"
    traffic_weight {
      latest_revision = true
      percentage      = 100
    }
  }

  # The application role's password (not the admin's), read by the app's identity from Key Vault (never in the Terraform state).
  dynamic "secret" {
    for_each = local.pg ? [1] : []
    content {
      name                = "store-password"
      key_vault_secret_id = azurerm_key_vault_secret.store_app_password[0].versionless_id
      identity            = azurerm_user_assigned_identity.cloud.id
    }
  }

  lifecycle {
    precondition {
      condition     = local.pg || local.api_max_replicas == 1
      error_message = "twin_api_max_replicas above 1 needs store_kind = \"postgres\": the SQLite state on the share has one writer (docs/deploy.md)."
    }
  }

  template {
    min_replicas = local.api_min_replicas
    max_replicas = local.api_max_replicas
    # Time for the last flush, the final Blob sync (up to 15 s) and closing SQLite on the share.
    termination_grace_period_seconds = 60

    # Any replica serves any request on PostgreSQL: scale on concurrent HTTP requests (SSE streams count).
    dynamic "http_scale_rule" {
      for_each = local.pg ? [1] : []
      content {
        name                = "http-concurrency"
        concurrent_requests = tostring(var.twin_api_concurrent_requests)
      }
    }

    # uid/gid 1000 is the image's `node` user. nobrl: Linux CIFS turns SQLite's POSIX byte-range
    # locks into SMB mandatory locks, which refuse SQLite's lock upgrades ("database is locked");
    # without them locking is per host, so exactly one replica may open the files (see README).
    # On PostgreSQL (store_kind postgres) no database is on the share: it holds the model files every
    # replica must see.
    volume {
      name          = "state"
      storage_type  = "AzureFile"
      storage_name  = azurerm_container_app_environment_storage.state.name
      mount_options = "uid=1000,gid=1000,dir_mode=0700,file_mode=0600,nobrl,mfsymlinks,cache=strict"
    }

    container {
      name    = "cloud"
      image   = var.container_image
      cpu     = 1.0
      memory  = "2Gi"
      command = ["node", "dist/cli/edgetwin.js", "cloud"]

      # A folder of the share, not its root: `edgetwin restore` moves the old state directory
      # aside, which a host that mounts the share can do to a folder but not to its mount point.
      volume_mounts {
        name     = "state"
        path     = local.state_dir
        sub_path = "cloud"
      }

      env {
        name  = "EDGETWIN_CLOUD_STATE_DIR"
        value = local.state_dir
      }
      # WAL keeps its index in shared memory, which an SMB share cannot provide across the mount.
      env {
        name  = "EDGETWIN_DB_JOURNAL_MODE"
        value = "delete"
      }
      env {
        name  = "EDGETWIN_STORE_KIND"
        value = var.store_kind
      }
      # The least-privilege application role (postgres.tf); the URL carries no password (PGPASSWORD
      # below comes from the Key Vault secret).
      # Port 5432, not the built-in PgBouncer (6432, transaction mode): LISTEN and the writer's
      # advisory lock need session connections.
      dynamic "env" {
        for_each = local.pg ? {
          EDGETWIN_STORE_URL = "postgres://${local.store_app_login}@${azurerm_postgresql_flexible_server.this[0].fqdn}:5432/${local.store_database}?sslmode=require"
        } : {}
        content {
          name  = env.key
          value = env.value
        }
      }
      # libpq's variable, which the pg driver reads itself: the cloud never holds it in its config.
      dynamic "env" {
        for_each = local.pg ? [1] : []
        content {
          name        = "PGPASSWORD"
          secret_name = "store-password"
        }
      }
      env {
        name  = "EDGETWIN_LAKEHOUSE_ROOT"
        value = local.lakehouse_root
      }
      env {
        name  = "EDGETWIN_CLOUD_HOST"
        value = "0.0.0.0"
      }
      env {
        name  = "AZURE_CLIENT_ID"
        value = azurerm_user_assigned_identity.cloud.client_id
      }
      env {
        name  = "EDGETWIN_EVENTHUBS_ENABLED"
        value = "true"
      }
      env {
        name  = "EDGETWIN_EVENTHUB_NAMESPACE"
        value = "${azurerm_eventhub_namespace.this.name}.servicebus.windows.net"
      }
      env {
        name  = "EDGETWIN_EVENTHUB_NAME"
        value = azurerm_eventhub.telemetry.name
      }
      env {
        name  = "EDGETWIN_EVENTHUB_CONSUMER_GROUP"
        value = azurerm_eventhub_consumer_group.cloud.name
      }
      # Sealed audit segments go to the immutable container (audit.tf), with the managed identity.
      env {
        name  = "EDGETWIN_AUDIT_BLOB_URL"
        value = "${azurerm_storage_account.audit.primary_blob_endpoint}${azurerm_storage_container.audit.name}"
      }
      # The local lakehouse is the working copy; every committed Parquet file is copied here and a
      # replica with an empty disk restores from it (docs/lakehouse.md, "Azure Blob copy").
      env {
        name  = "EDGETWIN_LAKEHOUSE_URL"
        value = "abfss://${azurerm_storage_data_lake_gen2_filesystem.lakehouse.name}@${azurerm_storage_account.lake.name}.dfs.core.windows.net/"
      }
      env {
        name  = "EDGETWIN_CHECKPOINT_STORE"
        value = "blob"
      }
      env {
        name  = "EDGETWIN_CHECKPOINT_CONTAINER_URL"
        value = "${azurerm_storage_account.lake.primary_blob_endpoint}${azurerm_storage_container.checkpoints.name}"
      }

      liveness_probe {
        transport = "HTTP"
        port      = 8480
        path      = "/healthz"
      }
      readiness_probe {
        transport = "HTTP"
        port      = 8480
        path      = "/healthz"
      }
    }
  }
}

# --- Optional private endpoints ------------------------------------------------------------------
locals {
  private_targets = var.enable_private_endpoints ? {
    eventhub = { id = azurerm_eventhub_namespace.this.id, subresource = "namespace" }
    dfs      = { id = azurerm_storage_account.lake.id, subresource = "dfs" }
    blob     = { id = azurerm_storage_account.lake.id, subresource = "blob" }
    file     = { id = azurerm_storage_account.state.id, subresource = "file" }
    vault    = { id = azurerm_key_vault.this.id, subresource = "vault" }
  } : {}
}

resource "azurerm_private_endpoint" "this" {
  for_each            = local.private_targets
  name                = "pe-${local.prefix}-${each.key}"
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  subnet_id           = var.subnet_id
  tags                = local.tags

  private_service_connection {
    name                           = "psc-${each.key}"
    private_connection_resource_id = each.value.id
    subresource_names              = [each.value.subresource]
    is_manual_connection           = false
  }

  lifecycle {
    precondition {
      condition     = var.subnet_id != null
      error_message = "subnet_id is required when enable_private_endpoints is true."
    }
  }
}

# --- Diagnostics into Log Analytics --------------------------------------------------------------
resource "azurerm_monitor_diagnostic_setting" "eventhub" {
  name                       = "to-log-analytics"
  target_resource_id         = azurerm_eventhub_namespace.this.id
  log_analytics_workspace_id = azurerm_log_analytics_workspace.this.id
  enabled_log {
    category_group = "allLogs"
  }
  enabled_metric {
    category = "AllMetrics"
  }
}
