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
  description = "Replicas of the cloud (twin API, Event Hubs consumer, lakehouse writer). Each replica keeps its own state and its lakehouse copy assumes a single writer, so this must stay 1 until the state is shared."
  type        = number
  default     = 1
  validation {
    condition     = var.twin_api_max_replicas == 1
    error_message = "twin_api_max_replicas must be 1: the lakehouse copy in Blob Storage has one writer (docs/lakehouse.md)."
  }
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
