# --- Scale-out: the cloud's state on PostgreSQL (store_kind = "postgres") ---------------------------
# Azure Database for PostgreSQL Flexible Server with zone-redundant HA and point-in-time-restore
# backups, reachable only inside the VNet (delegated subnet + private DNS zone); the Container Apps
# environment joins the same VNet. The password never enters the Terraform state: it is generated
# as an ephemeral value and written with write-only arguments to the server and to Key Vault, from
# where the container reads it as a secret reference (PGPASSWORD). Bump
# store_password_version to rotate it. docs/deploy.md "Scale-out on PostgreSQL" has the design.
locals {
  pg = var.store_kind == "postgres"
  # Without PostgreSQL the SQLite state on the share allows one replica only (docs/deploy.md).
  api_min_replicas = local.pg ? max(2, var.twin_api_min_replicas) : 1
  api_max_replicas = local.pg ? max(local.api_min_replicas, coalesce(var.twin_api_max_replicas, 10)) : coalesce(var.twin_api_max_replicas, 1)
  store_database   = "edgetwin"
  store_login      = "edgetwin"
  store_app_login  = "edgetwin_app"
}

resource "azurerm_virtual_network" "this" {
  count               = local.pg ? 1 : 0
  name                = "vnet-${local.prefix}"
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  address_space       = [var.vnet_address_space]
  tags                = local.tags
}

# The Container Apps environment (consumption only: a /23 of its own, not delegated).
resource "azurerm_subnet" "apps" {
  count                = local.pg ? 1 : 0
  name                 = "snet-apps"
  resource_group_name  = azurerm_resource_group.this.name
  virtual_network_name = azurerm_virtual_network.this[0].name
  address_prefixes     = [cidrsubnet(var.vnet_address_space, 7, 0)]
}

# Flexible Server private access: a subnet delegated to the service, nothing else in it.
resource "azurerm_subnet" "postgres" {
  count                = local.pg ? 1 : 0
  name                 = "snet-postgres"
  resource_group_name  = azurerm_resource_group.this.name
  virtual_network_name = azurerm_virtual_network.this[0].name
  address_prefixes     = [cidrsubnet(var.vnet_address_space, 8, 2)]
  delegation {
    name = "postgres-flexible"
    service_delegation {
      name    = "Microsoft.DBforPostgreSQL/flexibleServers"
      actions = ["Microsoft.Network/virtualNetworks/subnets/join/action"]
    }
  }
}

resource "azurerm_private_dns_zone" "postgres" {
  count               = local.pg ? 1 : 0
  name                = "${local.prefix}.private.postgres.database.azure.com"
  resource_group_name = azurerm_resource_group.this.name
  tags                = local.tags
}

resource "azurerm_private_dns_zone_virtual_network_link" "postgres" {
  count                 = local.pg ? 1 : 0
  name                  = "postgres-vnet"
  private_dns_zone_name = azurerm_private_dns_zone.postgres[0].name
  resource_group_name   = azurerm_resource_group.this.name
  virtual_network_id    = azurerm_virtual_network.this[0].id
  registration_enabled  = false
}

# Never stored in the state or the plan: consumed only by the write-only arguments below.
ephemeral "random_password" "store" {
  count   = local.pg ? 1 : 0
  length  = 40
  special = false
}

resource "azurerm_postgresql_flexible_server" "this" {
  count                             = local.pg ? 1 : 0
  name                              = "psql-${local.prefix}"
  location                          = azurerm_resource_group.this.location
  resource_group_name               = azurerm_resource_group.this.name
  version                           = var.postgres_version
  sku_name                          = var.postgres_sku
  storage_mb                        = var.postgres_storage_mb
  auto_grow_enabled                 = true
  zone                              = "1"
  delegated_subnet_id               = azurerm_subnet.postgres[0].id
  private_dns_zone_id               = azurerm_private_dns_zone.postgres[0].id
  public_network_access_enabled     = false
  administrator_login               = local.store_login
  administrator_password_wo         = ephemeral.random_password.store[0].result
  administrator_password_wo_version = var.store_password_version
  # Point-in-time restore to any second within this window (full backups + WAL archived by the service).
  backup_retention_days        = var.postgres_backup_retention_days
  geo_redundant_backup_enabled = var.postgres_geo_redundant_backup
  tags                         = local.tags

  authentication {
    password_auth_enabled = true
  }

  # A synchronous standby in another zone; failover keeps the same host name (the replicas reconnect).
  dynamic "high_availability" {
    for_each = var.postgres_high_availability ? [1] : []
    content {
      mode                      = "ZoneRedundant"
      standby_availability_zone = "2"
    }
  }

  # After a failover the primary runs in the standby's zone: not a change to undo.
  lifecycle {
    ignore_changes = [zone, high_availability[0].standby_availability_zone]
  }

  depends_on = [azurerm_private_dns_zone_virtual_network_link.postgres]
}

resource "azurerm_postgresql_flexible_server_database" "edgetwin" {
  count     = local.pg ? 1 : 0
  name      = local.store_database
  server_id = azurerm_postgresql_flexible_server.this[0].id
  charset   = "UTF8"
  collation = "en_US.utf8"
}

ephemeral "random_password" "store_app" {
  count   = local.pg ? 1 : 0
  length  = 40
  special = false
}

resource "azurerm_key_vault_secret" "store_password" {
  count            = local.pg ? 1 : 0
  name             = "cloud-store-password"
  value_wo         = ephemeral.random_password.store[0].result
  value_wo_version = var.store_password_version
  key_vault_id     = azurerm_key_vault.this.id
  depends_on       = [azurerm_role_assignment.deployer_kv_admin]
}

# The application role's password: the setup-db job sets it (as a SCRAM verifier), the replicas log in with it.
resource "azurerm_key_vault_secret" "store_app_password" {
  count            = local.pg ? 1 : 0
  name             = "cloud-store-app-password"
  value_wo         = ephemeral.random_password.store_app[0].result
  value_wo_version = var.store_password_version
  key_vault_id     = azurerm_key_vault.this.id
  depends_on       = [azurerm_role_assignment.deployer_kv_admin]
}

# `edgetwin cloud setup-db` as the server admin: migrations, then the app role and its grants.
# Started by hand (az containerapp job start) after an apply that changes the image, before the
# new revision takes traffic; a replica meeting an older schema refuses to start (EDGETWIN_ERR_STORE_SCHEMA).
resource "azurerm_container_app_job" "setup_db" {
  count                        = local.pg ? 1 : 0
  name                         = "job-${local.prefix}-setup-db"
  location                     = azurerm_resource_group.this.location
  resource_group_name          = azurerm_resource_group.this.name
  container_app_environment_id = azurerm_container_app_environment.this.id
  replica_timeout_in_seconds   = 1800
  replica_retry_limit          = 1
  tags                         = local.tags

  manual_trigger_config {
    parallelism              = 1
    replica_completion_count = 1
  }

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.cloud.id]
  }

  secret {
    name                = "store-admin-password"
    key_vault_secret_id = azurerm_key_vault_secret.store_password[0].versionless_id
    identity            = azurerm_user_assigned_identity.cloud.id
  }
  secret {
    name                = "store-app-password"
    key_vault_secret_id = azurerm_key_vault_secret.store_app_password[0].versionless_id
    identity            = azurerm_user_assigned_identity.cloud.id
  }

  template {
    container {
      name    = "setup-db"
      image   = var.container_image
      cpu     = 0.5
      memory  = "1Gi"
      command = ["node", "dist/cli/edgetwin.js", "cloud", "setup-db", "--app-role", local.store_app_login]
      env {
        name  = "EDGETWIN_STORE_KIND"
        value = "postgres"
      }
      env {
        name  = "EDGETWIN_STORE_URL"
        value = "postgres://${local.store_login}@${azurerm_postgresql_flexible_server.this[0].fqdn}:5432/${local.store_database}?sslmode=require"
      }
      env {
        name        = "PGPASSWORD"
        secret_name = "store-admin-password"
      }
      env {
        name        = "EDGETWIN_APP_DB_PASSWORD"
        secret_name = "store-app-password"
      }
    }
  }
}
