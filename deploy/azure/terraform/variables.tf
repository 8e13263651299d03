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

variable "twin_api_min_replicas" {
  type    = number
  default = 1
}

variable "twin_api_max_replicas" {
  description = "Replicas of the cloud (twin API, Event Hubs consumer, lakehouse writer). The SQLite state on the Azure Files share is mounted without cross-host locks (nobrl) and the lakehouse copy in Blob Storage has one writer, so this must stay 1."
  type        = number
  default     = 1
  validation {
    condition     = var.twin_api_max_replicas == 1
    error_message = "twin_api_max_replicas must be 1: the SQLite state on the share and the lakehouse copy in Blob Storage have one writer (docs/deploy.md)."
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
  type    = number
  default = 30
}
