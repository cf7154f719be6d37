//! `etcdserverpb.Auth`: authentication is not supported over the etcd API (the cluster's own
//! transport is authenticated by its cookie and TLS): AuthStatus answers "disabled", every
//! other call `Unimplemented` with that reason.

use tonic::{Request, Response, Status};

use super::{
    header,
    pb::etcdserverpb::{self as rpc, auth_server::Auth as AuthApi},
};
use crate::kv::Kv;

pub(crate) struct AuthService {
    pub(crate) kv: Kv,
}

fn unsupported() -> Status {
    Status::unimplemented(
        "etcd authentication (users, roles) is not supported by this store; auth is always disabled",
    )
}

/// The Auth service: AuthStatus, and every other method unsupported (one macro builds the
/// whole impl, as `async_trait` must see the methods expanded).
macro_rules! auth_service {
    ($($name:ident($req:ident) -> $resp:ident;)*) => {
        #[tonic::async_trait]
        impl AuthApi for AuthService {
            async fn auth_status(
                &self,
                _req: Request<rpc::AuthStatusRequest>,
            ) -> Result<Response<rpc::AuthStatusResponse>, Status> {
                Ok(Response::new(rpc::AuthStatusResponse {
                    header: Some(header(&self.kv, 0)),
                    enabled: false,
                    auth_revision: 0,
                }))
            }

            $(
                async fn $name(
                    &self,
                    _req: Request<rpc::$req>,
                ) -> Result<Response<rpc::$resp>, Status> {
                    Err(unsupported())
                }
            )*
        }
    };
}

auth_service! {
    auth_enable(AuthEnableRequest) -> AuthEnableResponse;
    auth_disable(AuthDisableRequest) -> AuthDisableResponse;
    authenticate(AuthenticateRequest) -> AuthenticateResponse;
    user_add(AuthUserAddRequest) -> AuthUserAddResponse;
    user_get(AuthUserGetRequest) -> AuthUserGetResponse;
    user_list(AuthUserListRequest) -> AuthUserListResponse;
    user_delete(AuthUserDeleteRequest) -> AuthUserDeleteResponse;
    user_change_password(AuthUserChangePasswordRequest) -> AuthUserChangePasswordResponse;
    user_grant_role(AuthUserGrantRoleRequest) -> AuthUserGrantRoleResponse;
    user_revoke_role(AuthUserRevokeRoleRequest) -> AuthUserRevokeRoleResponse;
    role_add(AuthRoleAddRequest) -> AuthRoleAddResponse;
    role_get(AuthRoleGetRequest) -> AuthRoleGetResponse;
    role_list(AuthRoleListRequest) -> AuthRoleListResponse;
    role_delete(AuthRoleDeleteRequest) -> AuthRoleDeleteResponse;
    role_grant_permission(AuthRoleGrantPermissionRequest) -> AuthRoleGrantPermissionResponse;
    role_revoke_permission(AuthRoleRevokePermissionRequest) -> AuthRoleRevokePermissionResponse;
}
