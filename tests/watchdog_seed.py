"""pytest-asyncioの動作検証用の最小限のテストコード"""
import asyncio
import socket
from typing import AsyncGenerator, Tuple
import pytest
import pytest_asyncio
@pytest_asyncio.fixture
async def simple_server() -> AsyncGenerator[Tuple[socket.socket, bool], None]:
    """最小限の機能を持つTCPサーバーフィクスチャ"""
    print("Server: フィクスチャ開始")
    server_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server_socket.bind(("localhost", 12346))
    server_socket.listen(1)
    server_socket.settimeout(0.1)
    print("Server: ソケット設定完了")
    async def handle_client():
        print("Server: handle_client開始")
        while True:
            try:
                print("Server: 接続待ち")
                client, _ = server_socket.accept()
                print("Server: クライアント接続")
                client.close()
            except socket.timeout:
                print("Server: タイムアウト")
                continue
    print("Server: タスク作成前")
    server_task = asyncio.create_task(handle_client())
    print("Server: タスク作成完了")
    try:
        yield server_socket, True
    finally:
        print("Server: クリーンアップ開始")
        server_task.cancel()
        server_socket.close()
        print("Server: クリーンアップ完了")
@pytest.mark.asyncio
@pytest.mark.timeout(1, method="thread")
async def test_simple_server(simple_server):
    """サーバーフィクスチャのテスト"""
    print("Test: テスト開始")
    server_socket, is_ready = simple_server
    print("Test: フィクスチャ取得完了")
    # 簡単な接続テスト
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    await asyncio.sleep(0.1)
    print("Test: クライアント接続試行")
    client.connect(("localhost", 12346))
    print("Test: クライアント接続成功")
    client.close()
    print("Test: テスト完了")
