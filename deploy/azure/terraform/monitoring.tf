# --- Azure Monitor: the platform's alerts and where they go (issue 17) -------------------------
# The equivalent of deploy/prometheus/edgetwin-alerts.yml for an Azure deployment, watched from
# outside the cloud so they fire when it is down: platform metrics of the Container App and Event
# Hubs, and log alerts over the cloud's structured logs in Log Analytics (the alert engine logs
# `alert.firing` / `alert.resolved` with the rule's kind: an alert here stays active while the
# newest event of a key is `alert.firing`, and resolves with it). One action group carries them
# to e-mail and to a webhook (Teams/Slack workflow or an on-call service).
resource "azurerm_monitor_action_group" "ops" {
  name                = "ag-${local.prefix}-ops"
  resource_group_name = azurerm_resource_group.this.name
  short_name          = substr("edgetwin${var.name}", 0, 12)
  tags                = local.tags

  dynamic "email_receiver" {
    for_each = var.alert_emails
    content {
      name                    = "email-${email_receiver.key}"
      email_address           = email_receiver.value
      use_common_alert_schema = true
    }
  }

  dynamic "webhook_receiver" {
    for_each = var.alert_webhook_url == "" ? [] : [var.alert_webhook_url]
    content {
      name                    = "webhook"
      service_uri             = webhook_receiver.value
      use_common_alert_schema = true
    }
  }
}

locals {
  # One log alert per platform rule kind of the cloud's alert engine (cloud/alerts/rules.ts).
  engine_alerts = {
    eventhubs-lag   = { kind = "eventhubs_lag", severity = 2, title = "Event Hubs consumer lag over 30 s" }
    api-p99         = { kind = "api_p99", severity = 2, title = "API p99 latency over 200 ms" }
    lake-writer     = { kind = "lake_writer_failing", severity = 1, title = "Lakehouse writer failing" }
    data-quality    = { kind = "data_quality", severity = 2, title = "Data quality below 95 %" }
    site-heartbeat  = { kind = "site_heartbeat_stale", severity = 2, title = "Site collector heartbeat stale" }
    quarantine-rate = { kind = "quarantine_rate", severity = 3, title = "Quarantine rate high" }
  }
}

resource "azurerm_monitor_scheduled_query_rules_alert_v2" "engine" {
  for_each             = local.engine_alerts
  name                    = "alert-${local.prefix}-${each.key}"
  resource_group_name     = azurerm_resource_group.this.name
  location                = azurerm_resource_group.this.location
  description             = "${each.value.title} (edgetwin alert engine, rule kind ${each.value.kind}); runbook docs/runbooks/alerts.md"
  severity                = each.value.severity
  scopes                  = [azurerm_log_analytics_workspace.this.id]
  evaluation_frequency    = "PT5M"
  window_duration         = "P1D"
  auto_mitigation_enabled = true
  tags                    = local.tags

  criteria {
    query                   = <<-KQL
      ContainerAppConsoleLogs_CL
      | where ContainerAppName_s == "${azurerm_container_app.twin_api.name}"
      | extend e = parse_json(Log_s)
      | where tostring(e.event) in ("alert.firing", "alert.resolved") and tostring(e.alert.kind) == "${each.value.kind}"
      | summarize arg_max(TimeGenerated, e) by key = tostring(e.alert.key)
      | where tostring(e.event) == "alert.firing"
      KQL
    time_aggregation_method = "Count"
    operator                = "GreaterThan"
    threshold               = 0
    failing_periods {
      minimum_failing_periods_to_trigger_alert = 1
      number_of_evaluation_periods             = 1
    }
  }

  action {
    action_groups = [azurerm_monitor_action_group.ops.id]
  }
}

resource "azurerm_monitor_metric_alert" "api_5xx" {
  name                = "alert-${local.prefix}-api-5xx"
  resource_group_name = azurerm_resource_group.this.name
  scopes              = [azurerm_container_app.twin_api.id]
  description         = "The twin API answers 5xx (runbook docs/runbooks/alerts.md#edgetwinapierrors)"
  severity            = 1
  frequency           = "PT1M"
  window_size         = "PT5M"
  tags                = local.tags

  criteria {
    metric_namespace = "Microsoft.App/containerApps"
    metric_name      = "Requests"
    aggregation      = "Total"
    operator         = "GreaterThan"
    threshold        = 10
    dimension {
      name     = "statusCodeCategory"
      operator = "Include"
      values   = ["5xx"]
    }
  }

  action {
    action_group_id = azurerm_monitor_action_group.ops.id
  }
}

resource "azurerm_monitor_metric_alert" "api_restarts" {
  name                = "alert-${local.prefix}-api-restarts"
  resource_group_name = azurerm_resource_group.this.name
  scopes              = [azurerm_container_app.twin_api.id]
  description         = "Twin API replicas restarting (crash loop?) — runbook docs/runbooks/alerts.md#edgetwindaemondown"
  severity            = 1
  frequency           = "PT5M"
  window_size         = "PT15M"
  tags                = local.tags

  criteria {
    metric_namespace = "Microsoft.App/containerApps"
    metric_name      = "RestartCount"
    aggregation      = "Maximum"
    operator         = "GreaterThan"
    threshold        = 2
  }

  action {
    action_group_id = azurerm_monitor_action_group.ops.id
  }
}

resource "azurerm_monitor_metric_alert" "eventhub_errors" {
  name                = "alert-${local.prefix}-eventhub-errors"
  resource_group_name = azurerm_resource_group.this.name
  scopes              = [azurerm_eventhub_namespace.this.id]
  description         = "Event Hubs throttles or fails requests: collectors' sinks back up"
  severity            = 2
  frequency           = "PT5M"
  window_size         = "PT15M"
  tags                = local.tags

  criteria {
    metric_namespace = "Microsoft.EventHub/namespaces"
    metric_name      = "ThrottledRequests"
    aggregation      = "Total"
    operator         = "GreaterThan"
    threshold        = 0
  }

  criteria {
    metric_namespace = "Microsoft.EventHub/namespaces"
    metric_name      = "ServerErrors"
    aggregation      = "Total"
    operator         = "GreaterThan"
    threshold        = 0
  }

  action {
    action_group_id = azurerm_monitor_action_group.ops.id
  }
}
