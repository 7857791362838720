from tests.conftest import ALICE_CUSTOMER_PASSWORD


def test_password_grant_issues_token(client):
    response = client.post(
        "/oauth/token",
        data={
            "grant_type": "password",
            "client_id": "public-app",
            "username": "alice@example.test",
            "password": ALICE_CUSTOMER_PASSWORD,
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "Bearer"
