//! Connection start-up: the token as a cleartext password.
//!
//! With auth on, the server asks for a cleartext password and checks it as
//! a bearer token ([`Authenticator`]: digests only, constant time); the user
//! name is ignored (the token names its holder). A wrong token is a FATAL
//! `28P01`. With auth off (loopback only, as on HTTP) no password is asked.
//! Cleartext is what lets the server keep only token digests; over a
//! network, serve TLS ([`crate::tls`]) so the password travels encrypted.
//! When TLS is required, a plaintext start-up is a FATAL `28000` before
//! any password is asked.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use lakehouse_common::auth::{Authenticator, Principal, Role};
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::{
    ClientInfo, ConnectionManager, PgWireConnectionState, PidSecretKeyGenerator,
    RandomPidSecretKeyGenerator,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use crate::error::fatal;

/// The role a connection needs; write statements check `write` each
/// ([`crate::handler::access`]).
const NEEDED: Role = Role::Read;

pub struct Startup {
    auth: Option<Arc<Authenticator>>,
    tls_required: bool,
    params: DefaultServerParameterProvider,
    manager: Arc<ConnectionManager>,
    pids: RandomPidSecretKeyGenerator,
}

impl Startup {
    /// `tls_required` refuses a start-up that did not switch to TLS.
    pub fn new(
        auth: Option<Arc<Authenticator>>,
        manager: Arc<ConnectionManager>,
        tls_required: bool,
    ) -> Self {
        let mut params = DefaultServerParameterProvider::default();
        params.server_version = format!("{} (lakehouse)", crate::settings::PG_VERSION);
        params.is_superuser = false;
        params.default_transaction_read_only = false;
        params.date_style = "ISO, MDY".to_string();
        Self {
            auth,
            tls_required,
            params,
            manager,
            pids: RandomPidSecretKeyGenerator::default(),
        }
    }

    async fn finish<C>(&self, client: &mut C) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (pid, secret) = self.pids.generate(client);
        client.set_pid_and_secret_key(pid, secret.clone());
        // Lets a CancelRequest with this pid and key cancel the running query.
        let (handle, guard) = self.manager.register(pid, secret);
        client.session_extensions().insert(handle);
        client.session_extensions().insert(guard);
        finish_authentication(client, &self.params).await
    }

    fn check(&self, password: &str) -> PgWireResult<Option<Principal>> {
        let Some(auth) = &self.auth else {
            return Ok(None);
        };
        let Some(who) = auth.authenticate(password) else {
            return Err(fatal(
                "28P01",
                "password authentication failed: the password must be a valid lakehouse token",
            ));
        };
        if who.role < NEEDED {
            return Err(fatal(
                "42501",
                format!(
                    "token {:?} has role {}; connecting needs {NEEDED}",
                    who.name, who.role
                ),
            ));
        }
        Ok(Some(who))
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                if self.tls_required && !client.is_secure() {
                    return Err(fatal(
                        "28000",
                        "TLS is required by this server ([queryd].tls_required): \
                         connect with sslmode=require or verify-full",
                    ));
                }
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                if self.auth.is_none() {
                    return self.finish(client).await;
                }
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                use futures::SinkExt;
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::CleartextPassword,
                    ))
                    .await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(pwd) => {
                let pwd = pwd.into_password()?;
                if let Some(who) = self.check(&pwd.password)? {
                    tracing::debug!(token_name = %who.name, "postgres client authenticated");
                    client.session_extensions().insert(who);
                }
                self.finish(client).await?;
            }
            _ => {}
        }
        Ok(())
    }
}
