use serde::{Deserialize, Serialize};

/// Who is acting: the identity a connector presents.
///
/// App-only mail access shows up with `app_id` (for Graph, the Graph resource
/// `00000003-0000-0000-c000-000000000000`) and `client_app_id` (the connector's own app). On-prem
/// EWS connectors are service accounts. [`ConnectorIdentity::connector_key`] picks the identifier
/// that names the connector.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConnectorIdentity {
    /// `AppId` (UAL) / `appId` (Entra).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    /// `ClientAppId` (UAL) — the application that made the call when `app_id` is a resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_app_id: Option<String>,
    /// Service principal object id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_principal_id: Option<String>,
    /// Display name when the log carries one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Account that authenticated (on-prem `domain\account`, UAL `UserId` for app-only access).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
}

/// Microsoft Graph's own application id: when it is the `AppId`, the caller is the `ClientAppId`.
pub const MICROSOFT_GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
/// Exchange Online's resource application id.
pub const EXCHANGE_ONLINE_APP_ID: &str = "00000002-0000-0ff1-ce00-000000000000";

impl ConnectorIdentity {
    /// The identifier that names the connector within a tenant: the calling app
    /// (`client_app_id` when `app_id` is a Microsoft resource such as Graph), else the app, else
    /// the service account.
    pub fn connector_key(&self) -> Option<&str> {
        // Both resource ids start `0000000`: most app ids differ at the first byte.
        let resource_app = self.app_id.as_deref().is_some_and(|id| {
            id.starts_with('0') && (id == MICROSOFT_GRAPH_APP_ID || id == EXCHANGE_ONLINE_APP_ID)
        });
        if resource_app {
            if let Some(client) = self.client_app_id.as_deref() {
                return Some(client);
            }
        }
        self.app_id
            .as_deref()
            .or(self.client_app_id.as_deref())
            .or(self.service_account.as_deref())
    }

    /// True when nothing identifies the actor.
    pub fn is_empty(&self) -> bool {
        self.app_id.is_none()
            && self.client_app_id.is_none()
            && self.service_principal_id.is_none()
            && self.service_account.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_calls_are_keyed_by_the_client_app() {
        let id = ConnectorIdentity {
            app_id: Some(MICROSOFT_GRAPH_APP_ID.into()),
            client_app_id: Some("5a95e683-08ad-424e-a441-1d1aec52c02c".into()),
            ..Default::default()
        };
        assert_eq!(
            id.connector_key(),
            Some("5a95e683-08ad-424e-a441-1d1aec52c02c")
        );
    }

    #[test]
    fn ews_app_only_is_keyed_by_the_app() {
        let id = ConnectorIdentity {
            app_id: Some("11111111-2222-3333-4444-555555555555".into()),
            client_app_id: Some("11111111-2222-3333-4444-555555555555".into()),
            ..Default::default()
        };
        assert_eq!(
            id.connector_key(),
            Some("11111111-2222-3333-4444-555555555555")
        );
    }

    #[test]
    fn on_prem_service_account_is_the_key_when_no_app() {
        let id = ConnectorIdentity {
            service_account: Some("domain\\svc-archive".into()),
            ..Default::default()
        };
        assert_eq!(id.connector_key(), Some("domain\\svc-archive"));
        assert!(!id.is_empty());
        assert!(ConnectorIdentity::default().is_empty());
    }
}
