variable "name" {
  description = "Short name used as a prefix for every resource (letters and digits, 3-12 characters)."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9]{3,12}$", var.name))
    error_message = "name must be 3-12 lowercase letters or digits."
  }
}

variable "location" {
  description = "Azure region."
  type        = string
  default     = "westeurope"
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = {}
}

variable "eventhub_partitions" {
  description = "Partitions of the telemetry hub: the unit of consumer scale-out (one consumer per partition at most)."
  type        = number
  default     = 8
}

variable "eventhub_sku" {
  description = "Event Hubs namespace SKU (Standard or Premium)."
  type        = string
  default     = "Standard"
}

variable "eventhub_capacity" {
  description = "Throughput units (Standard) or processing units (Premium)."
  type        = number
  default     = 2
}

variable "eventhub_retention_days" {
  description = "How long Event Hubs keeps messages: the replay window if the cloud consumers fall behind."
  type        = number
  default     = 7
}

variable "container_image" {
  description = "The edgetwin image (deploy/docker/Dockerfile), e.g. myregistry.azurecr.io/edgetwin:0.1.0."
  type        = string
}

variable "store_kind" {
  description = "Where the cloud keeps its state: sqlite (one replica, the file on the Azure Files share) or postgres (Flexible Server, several replicas; postgres.tf)."
  type        = string
  default     = "sqlite"
  validation {
    condition     = contains(["sqlite", "postgres"], var.store_kind)
    error_message = "store_kind must be sqlite or postgres."
  }
}

variable "twin_api_min_replicas" {
  description = "Fewest replicas with store_kind = postgres (at least 2: a replica's death leaves the API up). SQLite runs exactly one."
  type        = number
  default     = 2
}

variable "twin_api_max_replicas" {
  description = "Most replicas (HTTP scale rule). Default: 10 on PostgreSQL, 1 on SQLite, where anything above 1 is refused (the state on the share has one writer)."
  type        = number
  default     = null
}

variable "twin_api_concurrent_requests" {
  description = "HTTP scale rule: concurrent requests per replica before another is added (open SSE streams count)."
  type        = number
  default     = 100
}

variable "vnet_address_space" {
  description = "VNet of the apps and PostgreSQL (store_kind = postgres): a /23 for the Container Apps environment and a /24 delegated to the server are cut from it."
  type        = string
  default     = "10.60.0.0/16"
}

variable "postgres_version" {
  type    = string
  default = "16"
}

variable "postgres_sku" {
  description = "Flexible Server compute; zone-redundant HA needs General Purpose or Memory Optimized (not Burstable)."
  type        = string
  default     = "GP_Standard_D2ds_v5"
}

variable "postgres_storage_mb" {
  type    = number
  default = 65536
}

variable "postgres_high_availability" {
  description = "Zone-redundant HA: a synchronous standby in another zone, automatic failover."
  type        = bool
  default     = true
}

variable "postgres_backup_retention_days" {
  description = "Point-in-time restore window of the server's automatic backups (7-35 days)."
  type        = number
  default     = 35
  validation {
    condition     = var.postgres_backup_retention_days >= 7 && var.postgres_backup_retention_days <= 35
    error_message = "postgres_backup_retention_days must be 7-35."
  }
}

variable "postgres_geo_redundant_backup" {
  description = "Keep the server's backups in the paired region too (geo-restore after a regional outage); set at creation only."
  type        = bool
  default     = true
}

variable "store_password_version" {
  description = "Bump to generate and set a new store password (server and Key Vault; it is never in the state)."
  type        = number
  default     = 1
}

variable "lake_replication" {
  description = "Replication of the lake account (ADLS Gen2): ZRS, or GZRS / RAGZRS for a geo-redundant copy in the paired region."
  type        = string
  default     = "ZRS"
  validation {
    condition     = contains(["LRS", "ZRS", "GRS", "RAGRS", "GZRS", "RAGZRS"], var.lake_replication)
    error_message = "lake_replication must be one of LRS, ZRS, GRS, RAGRS, GZRS, RAGZRS."
  }
}

variable "state_share_quota_gb" {
  description = "Provisioned size of the premium Azure Files share holding the cloud's SQLite state (twins.db). Premium shares are billed by provisioned size; 100 GiB is the minimum and brings the baseline IOPS SQLite's synced commits need."
  type        = number
  default     = 100
  validation {
    condition     = var.state_share_quota_gb >= 100 && var.state_share_quota_gb <= 102400
    error_message = "state_share_quota_gb must be between 100 and 102400 (premium file share limits)."
  }
}

variable "state_share_replication" {
  description = "Replication of the premium FileStorage account: ZRS survives a zone outage; LRS where premium ZRS is not offered."
  type        = string
  default     = "ZRS"
  validation {
    condition     = contains(["LRS", "ZRS"], var.state_share_replication)
    error_message = "state_share_replication must be LRS or ZRS (premium file shares support no other)."
  }
}

variable "lakehouse_on_share" {
  description = "Keep the lakehouse working copy on the Azure Files share instead of the replica's ephemeral disk (4 GiB at 1 vCPU): for a lakehouse larger than that; slower DuckDB I/O, no restore download after a replacement."
  type        = bool
  default     = false
}

variable "enable_private_endpoints" {
  description = "Put Event Hubs, Storage and Key Vault behind private endpoints in subnet_id."
  type        = bool
  default     = false
}

variable "subnet_id" {
  description = "Subnet for private endpoints (required when enable_private_endpoints is true)."
  type        = string
  default     = null
}

variable "log_retention_days" {
  description = "Log Analytics retention (the seeds ask for a year of searchable logs; the audit trail itself is kept 7 years in the immutable audit container)."
  type        = number
  default     = 365
  validation {
    condition     = var.log_retention_days >= 30 && var.log_retention_days <= 730
    error_message = "log_retention_days must be 30-730."
  }
}

variable "audit_retention_days" {
  description = "Time-based immutability of the audit container: each exported segment is undeletable and unchangeable this long (7 years)."
  type        = number
  default     = 2557
}

variable "audit_immutability_locked" {
  description = "Lock the audit container's immutability policy (cannot be shortened or removed afterwards). false only for throwaway environments."
  type        = bool
  default     = true
}

variable "audit_replication" {
  description = "Replication of the audit storage account (GRS: a regional outage does not lose the trail)."
  type        = string
  default     = "GRS"
}

variable "alert_emails" {
  description = "E-mail addresses of the Azure Monitor action group (platform alerts)."
  type        = list(string)
  default     = []
}

variable "alert_webhook_url" {
  description = "Webhook of the action group (a Teams/Slack workflow or an on-call service); empty: none."
  type        = string
  default     = ""
  sensitive   = true
}
